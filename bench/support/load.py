"""Concurrent streams against a running stack: what the load test, the soak and the capacity
benchmark share. Each stream is a `livedub dub` run in its own thread."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel

from worker.cli.dub import DubReport, SegmentCounts, run_dub
from worker.core.stats import percentile


class LoadSummary(BaseModel):
    """N concurrent `livedub dub` runs, added up."""

    streams: int
    segments: SegmentCounts
    fallback_reasons: dict[str, int]
    lost: int
    errors: list[str]
    g2g_p95_first_min_s: float
    g2g_p95_last_min_s: float
    units: SegmentCounts = SegmentCounts()  # speech mode
    unit_fallback_reasons: dict[str, int] = {}


def start_offsets(n: int, segment_s: float = 6.0, gop_s: float = 2.0) -> list[float]:
    """When each of ``n`` streams starts, after the first: at i/n of a segment, and at i/n of a keyframe
    interval within it, as independent encoders' keyframes fall. Starts i x 6/n s apart put three streams'
    2 s keyframes at the same instants, so their units cut inside speech (cut by a limit the keyframes set)
    reached the STS service together and the later fell back (soak0's 15 of 19 fallbacks, 2026-11-29).
    Pure."""
    return [i * segment_s / n + (i * gop_s / n - i * segment_s / n % gop_s) % gop_s for i in range(n)]


def run_streams(state: dict[str, Any], video: Path, n: int, out_dir: Path, prefix: str,
                offsets: Sequence[float] = ()) -> list[DubReport | str]:
    """``n`` concurrent `livedub dub` runs; stream i starts ``offsets[i]`` s after the first (none: all at
    once, the worst burst; see :func:`start_offsets`). Each is its report, or the error that stopped it."""
    reports: list[DubReport | str] = ["not run"] * n
    start = threading.Event()
    t0 = [0.0]

    def one(i: int) -> None:
        start.wait()
        delay = t0[0] + (offsets[i] if i < len(offsets) else 0.0) - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the schedule of starts, not a wait for readiness
        try:
            reports[i] = run_dub(video, out_dir / f"{prefix}{i}.mp4", state, stream_id=f"{prefix}{i}")
        except Exception as exc:  # noqa: BLE001 - reported, not raised from a thread
            reports[i] = f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    t0[0] = time.monotonic()
    start.set()
    for t in threads:
        t.join()
    return reports


def summarize(reports: list[DubReport | str], seconds: float, segment_s: float = 6.0,
              gop_s: float = 2.0) -> LoadSummary:
    """The streams' reports added up. Each stream of ``seconds`` should account for every piece: one per
    ``segment_s`` in fixed mode, one per keyframe interval (``gop_s``) in speech mode (a report with units)."""
    totals, units = SegmentCounts(), SegmentCounts()
    reasons: dict[str, int] = {}
    unit_reasons: dict[str, int] = {}
    first: list[float] = []
    last: list[float] = []
    done = [r for r in reports if isinstance(r, DubReport)]
    for r in done:
        totals.processed += r.segments.processed
        totals.fallback += r.segments.fallback
        totals.failed += r.segments.failed
        for code, count in r.fallback_reasons.items():
            reasons[code] = reasons.get(code, 0) + count
        if r.units is not None:
            units.processed += r.units.processed
            units.fallback += r.units.fallback
            units.failed += r.units.failed
            for code, count in r.unit_fallback_reasons.items():
                unit_reasons[code] = unit_reasons.get(code, 0) + count
        first += r.latency_series_s[:60]
        last += r.latency_series_s[-60:]
    speech = any(r.units is not None for r in done)
    expected = math.ceil(seconds / (gop_s if speech else segment_s) - 1e-9)
    lost = expected * len(reports) - (totals.processed + totals.fallback + totals.failed)
    return LoadSummary(streams=len(reports), segments=totals, fallback_reasons=reasons, lost=lost,
                       errors=[r for r in reports if isinstance(r, str)],
                       g2g_p95_first_min_s=percentile(sorted(first), 95),
                       g2g_p95_last_min_s=percentile(sorted(last), 95), units=units,
                       unit_fallback_reasons=unit_reasons)


def shortfalls(s: LoadSummary, drift: float = 0.10) -> list[str]:
    """Why a summarized run did not hold in real time: any fallback, failed or lost segment, any error,
    or glass-to-glass p95 in the last minute more than ``drift`` above the first minute's (a backlog
    building up). Empty when it held."""
    out = [f"{n} {k}" for k, n in (("fallback", s.segments.fallback), ("failed", s.segments.failed)) if n]
    out += [f"{s.lost} lost"] if s.lost else []
    out += [f"{len(s.errors)} stream errors"] if s.errors else []
    first, last = s.g2g_p95_first_min_s, s.g2g_p95_last_min_s
    if last > first * (1 + drift):
        out.append(f"latency drifts: p95 {first:.2f}s -> {last:.2f}s")
    return out


def by_window(series: list[list[float]], window: int) -> list[float]:
    """The p95 of each ``window`` seconds of several streams' per-second series, stream by stream in
    step: whether a long run's delay stays flat from its start to its end, not only in its first and last
    minute. Pure."""
    length = max((len(x) for x in series), default=0)
    return [percentile(sorted(v for x in series for v in x[i:i + window]), 95) for i in range(0, length, window)]


def stack_rss_mb(run_dir: Path, extra_marks: tuple[str, ...] = ()) -> dict[str, float]:
    """Resident memory of each long-lived process of the stack (by its log/run dir or worker tag)."""
    marks = (str(run_dir), *extra_marks)
    out = {}
    for p in psutil.process_iter(["pid", "cmdline", "memory_info"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if any(m in cmd for m in marks) and "ffmpeg" not in cmd:
            out[f"{p.info['pid']}:{cmd[:60]}"] = p.info["memory_info"].rss / 2**20
    return out
