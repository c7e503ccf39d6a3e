import pytest

from worker.core.timing import (
    AAC_FRAME,
    FitPlan,
    audio_boundary,
    first_placement,
    fit_plan,
    matching_cut,
    output_delay_s,
    piece_deadline,
    plan_segment,
    planned_av_offsets_ms,
    poll_delay,
    resumed_offset,
    slice_plan,
    takeover_shift,
    to_us,
)


def test_boundaries_are_aac_frames_nearest_to_video_time():
    assert audio_boundary(0) == 0
    assert audio_boundary(to_us(0.021)) == 1024  # 0.021 s is 0.98 frames
    assert audio_boundary(to_us(6.021)) == 1024 * 282  # 282.23 frames
    for t in (0.0, 1.5, 6.021, 3600.04):
        b = audio_boundary(to_us(t))
        assert b % AAC_FRAME == 0
        assert abs(b / 48000 - t) <= 512 / 48000 + 1e-9


def test_half_frame_rounds_up_not_to_even():
    # One sample per microsecond and 2-sample frames make exact halves: 5 us is 2.5 frames.
    # round-half-even would give 2 frames for 2.5 and 4 for 3.5; half-up gives 3 and 4.
    assert audio_boundary(5, rate=1_000_000, frame=2) == 6
    assert audio_boundary(7, rate=1_000_000, frame=2) == 8
    assert audio_boundary(4, rate=1_000_000, frame=2) == 4


def test_neighbours_agree_on_their_shared_boundary():
    starts = [to_us(x) for x in (0.021, 6.021, 12.021, 18.021)]
    ends = starts[1:] + [to_us(20.021)]
    pieces = [(audio_boundary(s), audio_boundary(e)) for s, e in zip(starts, ends, strict=True)]
    for (_, end), (start, _) in zip(pieces, pieces[1:], strict=False):
        assert end == start


def test_negative_time_is_refused():
    with pytest.raises(ValueError):
        audio_boundary(-1)


@pytest.mark.parametrize("dub,slot,maxr,plan", [
    (1000, 1000, 1.3, FitPlan(1.0, 0, 0)),
    (500, 1000, 1.3, FitPlan(1.0, 500, 0)),
    (1200, 1000, 1.3, FitPlan(1.2, 0, 0)),
    (1300, 1000, 1.3, FitPlan(1.3, 0, 0)),
    (2600, 1000, 1.3, FitPlan(1.3, 0, 1000)),
    (1100, 1000, 1.0, FitPlan(1.0, 0, 100)),
])
def test_fit_plan(dub, slot, maxr, plan):
    assert fit_plan(dub, slot, maxr) == plan


@pytest.mark.parametrize("dub,trim", [
    (1301, 1),  # 1301 / 1.3 = 1000.77: 1001 samples after the stretch, one over the slot
    (1303, 3),  # 1002.31 rounds up to 1003: a partial sample is a whole one
    (1950, 500),  # 1500 after the stretch
    (2601, 1001),  # 2000.77 -> 2001
    (13000, 9000),  # 10000
])
def test_fit_plan_trims_exactly_what_still_overflows_after_the_full_stretch(dub, trim):
    assert fit_plan(dub, 1000, 1.3) == FitPlan(1.3, 0, trim)


def test_fit_plan_refuses_nonsense():
    with pytest.raises(ValueError):
        fit_plan(10, 0, 1.3)
    with pytest.raises(ValueError):
        fit_plan(10, 10, 0.9)


def test_slice_plan_pads_with_silence_where_the_track_has_nothing():
    assert slice_plan(40, 0, 10, 2) == (20, 0)  # all there
    assert slice_plan(40, 15, 25, 2) == (10, 10)  # the track ends at sample 20
    assert slice_plan(40, 30, 35, 2) == (0, 10)  # nothing yet
    assert slice_plan(41, 19, 21, 2) == (2, 2)  # a half-written frame does not count
    with pytest.raises(ValueError):
        slice_plan(40, 5, 4, 2)


def test_deadlines():
    assert output_delay_s(6, 1.5) == 7.5
    assert piece_deadline(1000.0, 12.0, 7.5, 0.5) == 1019.0


def test_poll_delay_is_coarse_far_from_the_deadline_and_fine_near_it():
    assert poll_delay(100.0, None) == 0.1  # nothing to wait for yet
    assert poll_delay(100.0, 105.0) == 0.1
    assert poll_delay(100.0, 100.07) == pytest.approx(0.05)  # wakes just before the deadline
    assert poll_delay(100.0, 100.01) == 0.02
    assert poll_delay(100.0, 99.0) == 0.02  # past it: the fallback goes out on the next look


def test_a_segment_is_placed_on_aac_frames_and_the_streams_timeline():
    # 6.021 s is 282.23 AAC frames (282 * 1024 = 288768), 12.021 s is 563.48 (563 * 1024 = 576512)
    plan = plan_segment((6.021, 12.021), 0.0, origin_at=1000.0, delay_s=8.0, margin_s=0.3)
    assert (plan.b0, plan.b1, plan.samples) == (288768, 576512, 287744)
    assert (plan.start_s, plan.end_s) == (6.021, 12.021)
    assert plan.deadline_at == pytest.approx(1013.721)
    moved = plan_segment((6.021, 12.021), 30.0, origin_at=1000.0, delay_s=8.0, margin_s=0.3)
    # AAC frames of the timeline (36.021 s: frame 1688, 42.021 s: frame 1970), as indices of the reader's
    # own track, which starts 30 s (1 440 000 samples, not a whole frame) later
    assert (moved.b0, moved.b1) == (1688 * 1024 - 1_440_000, 1970 * 1024 - 1_440_000)
    assert (moved.start_s, moved.end_s) == (36.021, 42.021) and moved.deadline_at == pytest.approx(1043.721)


def test_two_readers_a_whole_number_of_segments_apart_meet_on_one_audio_sample():
    # the old reader's segment ends at 19.19 s of its clock; the new one, 6 s behind, starts there at 13.19
    old = plan_segment((13.19, 19.19), 0.0, origin_at=1000.0, delay_s=8.0, margin_s=0.3)
    new = plan_segment((13.19, 19.19), 6.0, origin_at=1000.0, delay_s=8.0, margin_s=0.3)
    assert new.start_s == pytest.approx(old.end_s, abs=1e-9)
    assert new.b0 + 6 * 48000 == old.b1  # the same timeline sample: no gap, no overlap
    assert old.b1 % 1024 == 0  # on the output's AAC frames


def test_a_takeover_clock_runs_whole_segments_behind_and_joins_above_zero():
    assert takeover_shift(15.2, 6.0) == 12.0  # joins at 3.2 s or later of its own clock
    assert takeover_shift(13.5, 6.0) == 12.0
    assert takeover_shift(12.9, 6.0) == 6.0  # 0.9 s would be too close to zero
    assert takeover_shift(0.5, 6.0) == 0.0
    assert takeover_shift(100.0, 4.5) == 99.0
    with pytest.raises(ValueError):
        takeover_shift(10.0, 0.0)


def test_a_cut_matches_within_a_millisecond_and_a_half():
    assert matching_cut(19.19, [13.19, 19.1905]) == 19.1905
    assert matching_cut(19.19, [13.19, 19.23]) is None
    assert matching_cut(19.19, []) is None


def test_the_first_segment_sets_the_origin_and_a_long_first_segment_the_delay():
    assert first_placement(1010.0, (0.0, 4.0), 6.0, 2.0) == (1006.0, 8.0)
    origin, delay = first_placement(1010.0, (0.0, 6.4), 6.0, 2.0)  # keyframes sparser than configured
    assert origin == pytest.approx(1003.6) and delay == pytest.approx(8.4)


def test_a_resumed_reader_follows_the_wall_clock_and_never_overlaps_what_is_placed():
    # 100 s after the origin, its first segment (0-6 s of its own clock) ended: it starts at 94 s
    assert resumed_offset(1100.0, 1000.0, (0.0, 6.0), last_end_s=60.0) == 94.0
    # the wall clock says 44 s, but 60 s are placed already: it goes on from 60 s
    assert resumed_offset(1050.0, 1000.0, (0.0, 6.0), last_end_s=60.0) == 60.0


def test_planned_av_offsets_are_the_distance_to_the_nearest_aac_frame():
    start, end = planned_av_offsets_ms((6.021, 12.021), 288768, 576512)
    assert start == pytest.approx(-5.0)  # 288768 / 48000 = 6.016 s
    assert end == pytest.approx(-10.3333, abs=1e-3)  # 576512 / 48000 = 12.010667 s
