"""What counts as holding in real time, for the capacity benchmark and the soak."""

from bench.support.load import LoadSummary, shortfalls
from worker.cli.dub import SegmentCounts


def summary(fallback: int = 0, failed: int = 0, lost: int = 0, first: float = 7.0, last: float = 7.0,
            errors: list[str] | None = None) -> LoadSummary:
    return LoadSummary(streams=2, segments=SegmentCounts(processed=100, fallback=fallback, failed=failed),
                       fallback_reasons={}, lost=lost, errors=errors or [], g2g_p95_first_min_s=first,
                       g2g_p95_last_min_s=last)


def test_a_clean_run_holds():
    assert shortfalls(summary()) == []
    assert shortfalls(summary(last=7.69)) == []  # within 10 %


def test_every_kind_of_shortfall_is_named():
    why = shortfalls(summary(fallback=3, failed=1, lost=2, errors=["boom"], last=7.8))
    assert why == ["3 fallback", "1 failed", "2 lost", "1 stream errors", "latency drifts: p95 7.00s -> 7.80s"]


def test_drift_alone_fails_a_run_without_fallback():
    assert shortfalls(summary(first=7.21, last=8.22)) == ["latency drifts: p95 7.21s -> 8.22s"]


def test_a_long_runs_delay_is_given_window_by_window():
    from bench.support.load import by_window

    steady = [5.0] * 1200
    late = [5.0] * 600 + [9.0] * 600
    assert by_window([steady, late], 600) == [5.0, 9.0]
    assert by_window([steady[:700]], 600) == [5.0, 5.0] and by_window([], 600) == []


def test_streams_start_spread_over_a_segment_and_over_a_keyframe_interval():
    from bench.support.load import start_offsets

    for n in (2, 3, 4):
        offs = start_offsets(n)
        assert offs[0] == 0.0 and offs == sorted(offs) and offs[-1] < 6.0 + 2.0
        assert sorted(round(o % 2.0, 6) for o in offs) == [round(2.0 * i / n, 6) for i in range(n)], offs
    assert start_offsets(3) == [0.0, 2.0 + 2 / 3, 4.0 + 4 / 3]
