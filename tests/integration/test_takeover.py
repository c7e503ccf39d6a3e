"""The make-before-break protocol between a shutting-down ingest run and its successor, step by step against
a real Redis (the real-process run is tests/integration/test_redeploy.py): the claim, the successor's clock,
the cuts it trades, the seam, the resend of an unclaimed request, giving up, and late copies standing down."""

import threading

import pytest

from tests.support import FakeClock, fresh_pipeline
from worker.media.parse import ListEntry
from worker.pipeline.ingest import StreamJob
from worker.pipeline.takeover import ABANDONED, CLAIM_WAIT_S, RESEND_S, Handover, Successor, seam_wait_s

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path, redis_url):
    reg, store, settings, clock, job = fresh_pipeline(redis_url, tmp_path)
    reg.mark_live("s", job)
    reg.set_fields("s", segment_seconds=6.0, reader_base_s=2.833, reader_offset_s=0.0)
    return reg, store, settings, clock, job


def entries(*cuts: float) -> list[ListEntry]:
    bounds = [0.0, *cuts]
    return [ListEntry(i, f"seg_{i:05d}.ts", a, b) for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))]


def test_the_successor_runs_whole_segments_behind_and_the_old_reader_stops_at_a_common_cut(env):
    reg, *_ = env
    sent: list[int] = []
    clock = FakeClock(0.0)
    old = Handover(reg, "s", segment_s=6.0, clock_now_s=14.5, send=sent.append,
                   can_take_over=True, monotonic=clock)
    assert sent == [1] and reg.get("s").handovers == 1
    assert reg.claim("s", "takeover_by", "job.new")
    assert not reg.claim("s", "takeover_by", "job.other")  # one successor only
    new = Successor(reg, "s", reg.get("s", with_segments=False), 6.0)
    assert new.shift == 12.0 and new.base_s == pytest.approx(14.833) and new.offset_s == 12.0
    # the new reader joined at 3.1 s of its clock (15.1 s of the old one) and cut at 7.119 and 13.119
    new.publish_cuts(entries(7.119, 13.119))
    old.refresh(reg.get("s", with_segments=False))
    assert old.cuts == [19.119, 25.119]  # in the old reader's clock
    assert not old.meet(18.119, next_seq=3)  # a cut of the old reader's the new one did not make
    assert new.seam_local(reg.get("s", with_segments=False)) is None
    assert old.meet(19.119, next_seq=4)
    rec = reg.get("s", with_segments=False)
    assert (rec.takeover_seam_s, rec.takeover_seam_seq) == (19.119, 4)
    assert new.seam_local(rec) == pytest.approx(7.119)  # the new reader goes on from its segment at 7.119
    assert not old.meet(25.119, next_seq=5)  # one seam


def test_an_unclaimed_request_is_sent_again_then_given_up(env):
    reg, *_ = env
    sent: list[int] = []
    clock = FakeClock(0.0)
    old = Handover(reg, "s", segment_s=6.0, clock_now_s=14.5, send=sent.append,
                   can_take_over=True, monotonic=clock)
    clock.sleep(RESEND_S + 0.1)
    old.refresh(reg.get("s", with_segments=False))
    assert sent == [1, 1]  # the first may sit in the shutting-down worker's own consumer
    clock.sleep(CLAIM_WAIT_S)
    old.refresh(reg.get("s", with_segments=False))
    assert old.abandoned and reg.get("s").takeover_by == ABANDONED
    assert not reg.claim("s", "takeover_by", "job.late")  # a successor that comes now resumes instead


def test_no_common_cut_in_time_is_overdue(env):
    reg, *_ = env
    clock = FakeClock(0.0)
    old = Handover(reg, "s", segment_s=6.0, clock_now_s=14.5, send=lambda n: None, can_take_over=True,
                   monotonic=clock)
    reg.claim("s", "takeover_by", "job.new")
    old.refresh(reg.get("s", with_segments=False))
    assert not old.overdue()
    clock.sleep(seam_wait_s(6.0) + 0.1)
    assert old.overdue()


def test_a_reader_whose_clock_is_unknown_is_handed_over_plainly(env):
    reg, *_ = env
    Handover(reg, "s", segment_s=6.0, clock_now_s=0.0, send=lambda n: None, can_take_over=False)
    assert reg.get("s").takeover_by == ABANDONED


def test_a_late_copy_of_the_request_stands_down_at_once(env):
    reg, store, settings, clock, job = env
    reg.claim("s", "takeover_by", f"{job}.running")  # another worker's run took the stream over
    late = StreamJob("s", job, registry=reg, store=store, settings=settings, takeover=1,
                     monotonic=clock, sleep=clock.sleep)
    t0 = clock()
    outcome = late.run()
    assert outcome.state is None and "another worker took the stream over" in outcome.reason
    assert clock() == t0  # no wait for the lease


def test_a_request_taken_by_a_worker_that_shuts_down_too_is_passed_on(env):
    reg, store, settings, clock, job = env
    shutdown = threading.Event()
    shutdown.set()
    passed: list[int] = []
    run = StreamJob("s", job, registry=reg, store=store, settings=settings, takeover=2, shutdown=shutdown,
                    hand_over=passed.append, monotonic=clock, sleep=clock.sleep)
    outcome = run.run()
    assert outcome.state is None and outcome.reason.startswith("passed on")
    assert passed == [2] and reg.get("s").takeover_by is None  # not claimed: another worker claims it
