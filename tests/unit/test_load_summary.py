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
