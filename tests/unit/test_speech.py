"""Speech units, dub placement, piece finality and the timeline mix: pure functions."""

import numpy as np
import pytest

from worker.core.placement import UnitSpan, piece_final, place_dub, window_end
from worker.core.speech import CutKind, CutParams, UnitCutter, max_unit_s, quietest
from worker.core.units import Unit, goes_on
from worker.media.mix import PlacedDub, duck_gain, mix_piece

P = CutParams(frame_s=0.1, min_pause_s=0.2, min_unit_s=1.0, max_unit_s=3.0, flush_pause_s=0.8, pad_s=0.1)


def run(pattern: str, energies: list[float] | None = None) -> list:
    """'s' speech, '.' silence, one frame each (0.1 s)."""
    cutter = UnitCutter(P)
    probs = [0.9 if c == "s" else 0.05 for c in pattern]
    units = cutter.feed(probs, energies or [1.0 if c == "s" else 0.01 for c in pattern])
    if (last := cutter.flush()) is not None:
        units.append(last)
    return units


def test_a_unit_closes_in_a_pause_once_it_is_long_enough():
    units = run("..ssssssssssss..sssssss..........")
    # 1.2 s of speech, then a 0.2 s pause: the unit closes in the pause (padded by one frame).
    assert [(u.start, u.end, u.kind) for u in units][0] == (1, 15, CutKind.PAUSE)
    assert units[0].free_until == 16
    assert units[1].start == 15 and units[1].kind is CutKind.PAUSE


def test_a_unit_that_closes_in_a_pause_ends_where_the_energy_falls_not_on_a_words_soft_end():
    params = CutParams(frame_s=0.1, min_pause_s=0.5, min_unit_s=1.0, max_unit_s=3.0, flush_pause_s=0.8, pad_s=0.1)
    cutter = UnitCutter(params)
    # The detector hears a pause from frame 12, but frames 12-13 still carry the word's last sound.
    energies = [1.0] * 12 + [0.6, 0.6] + [0.01] * 6
    units = cutter.feed([0.9] * 12 + [0.05] * 8, energies)
    assert [(u.start, u.end, u.kind) for u in units] == [(0, 15, CutKind.PAUSE)]
    # A clean pause (equal energies, or a codec's noise under the floor of silence): the unit ends one pad
    # after the speech, as the detector heard it.
    assert run("ssssssssssss..........")[0].end == 13
    hiss = [1.0] * 12 + [8e-5, 9e-5, 2e-5, 1e-5, 3e-5, 1e-5, 1e-5, 1e-5]
    assert UnitCutter(params).feed([0.9] * 12 + [0.05] * 8, hiss)[0].end == 13
    # Speech that resumes as the unit closes, after the pause's quietest frame: the next unit starts where
    # this one ended, not a pad before its speech, so the two never overlap.
    padded = CutParams(frame_s=0.1, min_pause_s=0.5, min_unit_s=1.0, max_unit_s=3.0, flush_pause_s=0.8, pad_s=0.2)
    cutter = UnitCutter(padded)
    units = cutter.feed([0.9] * 12 + [0.05] * 5 + [0.9] * 12 + [0.05] * 8,
                        [1.0] * 12 + [0.6, 0.6, 0.6, 0.05, 0.0] + [1.0] * 12 + [0.0] * 8)
    assert [(u.start, u.end) for u in units] == [(0, 16), (16, 31)]


def test_a_short_word_is_not_dubbed_alone_across_a_short_pause():
    units = run("sss..ssssssssss.........")
    assert len(units) == 1  # "Yes. ..." and what follows: one unit
    assert (units[0].start, units[0].kind) == (0, CutKind.PAUSE)


def test_a_short_unit_closes_after_a_long_silence():
    units = run("sss" + "." * 12)
    assert [(u.start, u.end, u.kind) for u in units] == [(0, 4, CutKind.PAUSE)]


def test_silence_and_noise_make_no_unit():
    assert run("." * 100) == []


def test_speech_without_a_pause_is_cut_at_its_quietest_point_within_the_maximum():
    pattern = "s" * 70
    energies = [1.0] * 70
    energies[21:24] = [0.3, 0.2, 0.3]  # the quietest stretch of the first 3 s
    units = run(pattern, energies)
    assert all(u.end - u.start <= 30 for u in units), [(u.start, u.end) for u in units]
    assert units[0].end == 22 and units[0].kind is CutKind.QUIET
    assert units[1].start == 22  # nothing lost between units
    assert all(a.end == b.start for a, b in zip(units, units[1:], strict=False))
    assert units[-1].kind is CutKind.END and units[-1].end == 70


def test_a_cut_at_the_maximum_as_a_pause_begins_leaves_no_unit_of_silence_and_ends_the_sentence():
    units = run("s" * 29 + "." * 10 + "s" * 15 + "." * 10)
    assert [(u.start, u.end, u.kind) for u in units] == [(0, 29, CutKind.QUIET), (38, 55, CutKind.PAUSE)]
    first, second = (unit_at(u) for u in units)
    assert not goes_on(first, second)  # the next speech began a sentence of its own


def test_speech_that_resumes_right_after_the_cut_goes_on_in_the_next_unit():
    units = run("s" * 29 + "." + "s" * 10 + "." * 10)
    assert [(u.start, u.end, u.kind) for u in units] == [(0, 29, CutKind.QUIET), (29, 41, CutKind.PAUSE)]
    first, second = (unit_at(u) for u in units)
    assert goes_on(first, second) and not goes_on(None, second) and not goes_on(second, first)


def unit_at(cut) -> Unit:
    return Unit(sequence=0, start_s=cut.start * 0.1, end_s=cut.end * 0.1, cut=cut.kind)


def test_quietest_prefers_the_latest_of_equals_past_the_minimum():
    assert quietest([0.0, 0.0, 1.0, 0.5, 0.5, 1.0], 2) == 4


def test_quietest_cuts_in_a_gap_between_words_not_in_one_silent_frame_inside_a_word():
    energies = [1.0] * 40
    energies[25] = 0.0  # a stop consonant's closure: one silent frame, speech both sides
    energies[31:34] = [0.15, 0.1, 0.15]  # a gap between two words: three quiet frames
    assert quietest(energies, 10) == 32
    assert quietest([1.0] * 10 + [0.05], 2) == 10  # the last frame is judged by the frames it has


def test_max_unit_follows_the_latency():
    assert max_unit_s(6.0, 1.5, 0.3, 0.8, 0.2, 1.5) == pytest.approx(4.7)
    assert max_unit_s(6.0, 1.5, 0.3, 0.8, 0.2, 1.5, piece_s=2.0) == pytest.approx(3.7)  # pieces seal whole
    assert max_unit_s(3.0, 0.0, 0.3, 0.8, 0.2, 1.5) == 1.5  # never below the floor
    assert max_unit_s(60.0, 1.5, 0.3, 0.8, 0.2, 1.5) == 15.0


def test_a_dub_ready_in_time_starts_with_its_unit():
    p = place_dub(1000, 5000, 3000, sealed_until=0, max_lag=1500, max_ratio=1.25)
    assert p is not None and (p.start, p.samples, p.ratio, p.trimmed) == (1000, 3000, 1.0, 0)


def test_a_late_dub_starts_where_the_timeline_is_not_sealed_within_the_lag():
    p = place_dub(1000, 5000, 3000, sealed_until=2000, max_lag=1500, max_ratio=1.25)
    assert p is not None and (p.start, p.samples, p.ratio) == (2000, 3000, 1.0)
    assert place_dub(1000, 5000, 3000, sealed_until=2501, max_lag=1500, max_ratio=1.25) is None


def test_a_long_dub_is_sped_up_then_trimmed_and_never_passes_the_next_unit():
    p = place_dub(0, 4000, 4800, 0, 0, 1.25)
    assert p is not None and p.ratio == pytest.approx(1.2) and p.end == 4000 and p.trimmed == 0
    p = place_dub(0, 4000, 6000, 0, 0, 1.25)
    assert p is not None and p.ratio == 1.25 and p.end == 4000 and p.trimmed == 800


def test_window_end_is_the_next_unit_or_the_heard_silence_within_the_tail():
    assert window_end(1000, 1500, 9000, 2000) == 1500
    assert window_end(1000, None, 1800, 2000) == 1800
    assert window_end(1000, None, 9000, 2000) == 3000
    assert window_end(1000, None, 500, 2000) == 1000


def test_a_piece_is_final_only_when_no_pending_unit_can_land_in_it():
    settled, pending = UnitSpan(0, 900, True), UnitSpan(500, 900, False)
    assert piece_final(0, 1000, [settled], None, 1000, 100)
    assert not piece_final(0, 1000, [settled], None, 999, 100)  # not heard to its end yet
    assert not piece_final(0, 1000, [settled], 800, 1200, 100)  # a unit opened inside it
    assert not piece_final(0, 1000, [pending], None, 1200, 100)
    assert not piece_final(1000, 2000, [pending], None, 2200, 200)  # its dub may run on into this piece
    assert piece_final(1000, 2000, [pending], None, 2200, 50)
    assert piece_final(0, 1000, [UnitSpan(1000, 1500, False)], 1000, 1200, 100)  # starts at the end


def test_the_duck_gain_is_continuous_across_a_piece_boundary():
    spans = [(900, 1700)]
    whole = duck_gain(0, 2400, spans, 0.25, ramp=200)
    halves = np.concatenate([duck_gain(0, 1000, spans, 0.25, ramp=200), duck_gain(1000, 1400, spans, 0.25, ramp=200)])
    assert np.array_equal(whole, halves)
    assert whole[0] == 1.0 and whole[1000] == 0.25 and whole[2399] == 1.0
    assert np.max(np.abs(np.diff(whole))) <= 0.75 / 200 + 1e-12  # ramps, no step


def test_mix_puts_each_dub_at_its_place_over_the_ducked_original():
    orig = np.full((10000, 2), 1000, dtype="<i2")
    dub = np.full((2000, 2), 2000, dtype="<i2")
    placed = [PlacedDub(4000, dub)]
    out = np.concatenate([mix_piece(orig[:5000], 0, placed, 0.5), mix_piece(orig[5000:], 5000, placed, 0.5)])
    assert out[0, 0] == 1000 and out[9999, 0] == 1000  # far from the dub: untouched
    assert out[4999, 0] == out[5000, 0] == 500 + 2000  # ducked plus the dub, the same across the boundary
    assert out[4000, 0] == 500  # the dub fades in from nothing: no click
    assert 1000 > out[3000, 0] > 500  # the original ramps down before the dub
    assert np.max(np.abs(np.diff(out[:, 0].astype(int)))) < 20  # no step anywhere


def test_a_units_budget_follows_the_keyframe_its_dub_must_reach():
    from worker.core.speech import unit_budget_s

    args = dict(piece_s=2.0, delay_s=6.0, lag_s=1.5, margin_s=0.3, reserve_s=0.5, hear_s=0.2, sts_s=1.2)
    # Just after a keyframe: the dub can reach no later piece within the lag, so it must be ready before
    # this piece is sealed.
    assert unit_budget_s(0.51, [0.08], **args) == pytest.approx(0.08 + 3.8 - 0.51)
    # Within the lag of the next keyframe: that piece will do.
    assert unit_budget_s(1.0, [0.08], **args) == pytest.approx(2.08 + 3.8 - 1.0)
    # Keyframes not seen yet are taken to come every piece_s.
    assert unit_budget_s(7.0, [0.08, 2.08], **args) == pytest.approx(8.08 + 3.8 - 7.0)
    assert unit_budget_s(0.5, [], **args) == pytest.approx(3.8)


def test_the_cutter_takes_each_units_own_limit():
    cutter = UnitCutter(P, longest=lambda start: 15)  # 1.5 s for every unit
    units = cutter.feed([0.9] * 40, [1.0] * 40)
    assert units and units[0].kind is CutKind.QUIET and units[0].end - units[0].start <= 15


def test_the_sts_estimate_follows_the_last_round_trips_below_the_configured_one():
    from worker.core.speech import chain_estimate_s

    assert chain_estimate_s([], 1.2) == 1.2
    assert chain_estimate_s([0.4, 0.5], 1.2) == 1.2  # too few known yet: the configured estimate
    assert chain_estimate_s([0.4, 0.6, 0.5], 1.2) == pytest.approx(0.8)  # the longest + 0.2
    idle = [0.4 + 0.01 * i for i in range(19)]
    assert chain_estimate_s(idle, 1.2) == pytest.approx(0.58 + 0.2)
    assert chain_estimate_s([*idle, 1.1], 1.2) == 1.2  # one slow unit among the last: the configured figure
    # Busy workers never make units shorter than the configured estimate allows (more units, more work).
    assert chain_estimate_s([1.0 + 0.05 * i for i in range(20)], 1.2) == 1.2
    assert chain_estimate_s([0.05] * 5, 1.2) == 0.5  # the floor
    assert chain_estimate_s([0.4, 0.5, 0.6, 2.0], 1.2, quantile=0.75) == pytest.approx(0.8)


def test_a_units_round_trip_is_close_to_placed_and_a_late_one_counts_as_late():
    from worker.core.segments import ReasonCode, SegmentStatus
    from worker.core.units import Unit

    base = dict(sequence=0, start_s=0.0, end_s=2.0, cut=CutKind.PAUSE, closed_at=100.0, deadline_at=103.0)
    assert Unit(**base, status=SegmentStatus.PROCESSED, placed_at=100.6).round_trip_s(1.7) == pytest.approx(0.6)
    for code in (ReasonCode.LATE, ReasonCode.STS_TIMEOUT):
        assert Unit(**base, status=SegmentStatus.FALLBACK, reason_code=code).round_trip_s(1.7) == 1.7
    assert Unit(**base, status=SegmentStatus.FALLBACK, reason_code=ReasonCode.STS_FAILED).round_trip_s(1.7) is None
    assert Unit(**base, status=SegmentStatus.PROCESSED).round_trip_s(1.7) is None  # nothing to dub: no dub placed
    assert Unit(**base).round_trip_s(1.7) is None  # not settled


def test_the_hearing_estimate_follows_the_last_reads_lags_from_zero_to_its_ceiling():
    from worker.core.speech import hear_estimate_s

    assert hear_estimate_s([0.0] * 19, 0.2) == 0.2  # too few reads yet: the allowance it starts with
    assert hear_estimate_s([-0.15, -0.1] * 10, 0.2) == 0.0  # heard before the origin's clock has it: nothing
    assert hear_estimate_s([0.02] * 19 + [0.3], 0.2) == pytest.approx(0.35)  # the latest read of the last, + 0.05
    assert hear_estimate_s([5.0] * 20, 0.2) == 1.0  # a reader that stalled: the ceiling
