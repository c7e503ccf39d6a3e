"""The publisher's decisions: what goes out at each deadline, when it waits, when it ends."""

import pytest

from worker.core.models import StreamRecord, StreamState
from worker.core.segments import LATE, DubOutcome, ReasonCode, Segment, SegmentStatus
from worker.core.speech import CutKind
from worker.core.units import Unit
from worker.pipeline.publishing import (
    Action,
    choose,
    decide,
    in_republish_grace,
    resume_point,
    unit_done_before,
    unit_files,
)


def seg(**kw):
    base = {"sequence": 3, "start_s": 18.0, "end_s": 24.0, "file": "f", "deadline_at": 100.0}
    base.update(kw)
    return Segment(**base)


def rec(**kw):
    base = {"stream_id": "s", "state": StreamState.LIVE, "job_id": "j", "created_at": 0.0, "updated_at": 0.0}
    base.update(kw)
    return StreamRecord(**base)


def test_a_ready_dub_goes_out_even_before_its_deadline():
    c = choose(seg(dub=DubOutcome.READY, piece="p.ts", fallback_piece="fb.ts"), now=90.0)
    assert (c.key, c.status, c.reason) == ("p.ts", SegmentStatus.PROCESSED, None)


def test_waits_until_the_deadline_for_the_dub():
    assert choose(seg(fallback_piece="fb.ts"), now=99.9) is None


def test_at_the_deadline_the_fallback_goes_out_as_late():
    c = choose(seg(fallback_piece="fb.ts"), now=100.0)
    assert (c.key, c.status, c.reason) == ("fb.ts", SegmentStatus.FALLBACK, LATE)


def test_a_failed_chain_falls_back_at_once_with_its_reason():
    c = choose(seg(dub=DubOutcome.FALLBACK, dub_reason="DECODE_ERROR", dub_reason_code=ReasonCode.STS_FAILED,
                   fallback_piece="fb.ts"), now=50.0)
    assert c.status is SegmentStatus.FALLBACK
    assert (c.reason.code, c.reason.text) == (ReasonCode.STS_FAILED, "DECODE_ERROR")


def test_nothing_to_feed_without_a_fallback_piece_even_late():
    assert choose(seg(dub=DubOutcome.FALLBACK, dub_reason="x", dub_reason_code=ReasonCode.STS_FAILED),
                  now=200.0) is None


# decide(): one step of the publisher's loop, for segment k -------------------------------------------

def test_before_the_deadline_it_waits_coarsely_far_away_and_finely_near():
    far = decide(3, seg(fallback_piece="fb.ts"), rec(), now=90.0, republish_grace_s=8)
    near = decide(3, seg(fallback_piece="fb.ts"), rec(), now=99.99, republish_grace_s=8)
    assert far.action is near.action is Action.WAIT
    assert far.wait_s == 0.1 and near.wait_s == 0.02


def test_at_the_deadline_it_feeds_the_fallback_as_late():
    d = decide(3, seg(fallback_piece="fb.ts"), rec(), now=100.0, republish_grace_s=8)
    assert d.action is Action.FEED and d.choice.key == "fb.ts" and d.choice.reason is LATE


def test_a_ready_dub_is_fed_at_once():
    d = decide(3, seg(dub=DubOutcome.READY, piece="p.ts", fallback_piece="fb.ts"), rec(), 10.0, 8)
    assert d.action is Action.FEED and d.choice.key == "p.ts"


def test_past_the_deadline_with_nothing_at_all_it_stalls():
    d = decide(3, seg(), rec(), now=100.5, republish_grace_s=8)
    assert d.action is Action.STALL and d.wait_s == 0.2
    assert decide(3, seg(), rec(), now=99.0, republish_grace_s=8).action is Action.WAIT


def test_a_segment_that_failed_before_it_was_prepared_is_skipped():
    d = decide(3, seg(status=SegmentStatus.FAILED), rec(), now=10.0, republish_grace_s=8)
    assert d.action is Action.SKIP


def test_an_unprepared_segment_is_waited_for_while_the_stream_runs_and_abandoned_once_it_is_over():
    unprepared = seg(deadline_at=None)
    assert decide(3, unprepared, rec(), 10.0, 8).action is Action.WAIT
    assert decide(3, None, rec(), 10.0, 8).action is Action.WAIT
    assert decide(3, None, rec(state=StreamState.FAILED), 10.0, 8).action is Action.ABANDON
    assert decide(3, unprepared, rec(state=StreamState.ENDED), 10.0, 8).action is Action.ABANDON


def test_after_the_last_piece_it_ends():
    done = rec(state=StreamState.DRAINING, segments_final=3, ended_input_at=50.0, stop_requested=True)
    assert decide(3, None, done, now=51.0, republish_grace_s=8).action is Action.END
    assert decide(2, seg(sequence=2, fallback_piece="fb.ts"), done, 200.0, 8).action is Action.FEED


def test_after_the_last_piece_of_a_dropped_input_it_holds_the_output_for_the_grace():
    dropped = rec(state=StreamState.DRAINING, segments_final=3, ended_input_at=50.0)
    assert decide(3, None, dropped, now=57.9, republish_grace_s=8).action is Action.HOLD
    assert decide(3, None, dropped, now=58.0, republish_grace_s=8).action is Action.END
    assert not in_republish_grace(dropped.model_copy(update={"stop_requested": True}), 51.0, 8)


@pytest.mark.parametrize("statuses,expected", [
    ([], 0),
    ([SegmentStatus.PROCESSED, SegmentStatus.FALLBACK], 2),
    ([SegmentStatus.PROCESSED, SegmentStatus.EXTRACTED, SegmentStatus.EXTRACTED], 1),
    ([SegmentStatus.FAILED, SegmentStatus.PROCESSED, SegmentStatus.EXTRACTED], 2),
])
def test_a_restarted_publisher_resumes_at_the_first_segment_not_out(statuses, expected):
    segments = [seg(sequence=i, status=s) for i, s in enumerate(statuses)]
    assert resume_point(segments) == expected


def test_a_units_files_are_done_once_its_dub_or_speech_is_behind_and_it_is_settled():
    placed = Unit(sequence=3, start_s=10.0, end_s=12.0, cut=CutKind.PAUSE, status=SegmentStatus.PROCESSED,
                  dub_start_s=10.5, dub_end_s=13.1)
    assert not unit_done_before(placed, 13.0, 60)  # its dub runs under the piece from 13 s
    assert unit_done_before(placed, 13.1, 60)
    waiting = Unit(sequence=4, start_s=12.5, end_s=14.0, cut=CutKind.PAUSE)  # no answer yet
    assert not unit_done_before(waiting, 20.0, 60)
    assert unit_done_before(waiting, 74.0, 60)  # a minute behind the pieces going out: never placed now
    assert unit_files("s/j", 4, ("pcm", "wav")) == ["s/j/unit_00004.pcm", "s/j/placed_u00004.pcm",
                                                    "s/j/dub_u00004.pcm", "s/j/dub_u00004.wav"]
