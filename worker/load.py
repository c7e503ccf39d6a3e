"""Concurrent streams against a running stack: what the load test, the soak and the capacity
benchmark share. Each stream is a `livedub dub` run in its own thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psutil
import redis

from worker.dub import run_dub
from worker.sts.sessions import percentile


def run_streams(state: dict[str, Any], video: Path, n: int, out_dir: Path, prefix: str,
                stagger_s: float = 0.0) -> list[dict[str, Any]]:
    """``n`` concurrent `livedub dub` runs; stream i starts ``i * stagger_s`` after the first (independent
    streams' segment boundaries fall at different times; 0 starts them all at once, the worst burst)."""
    reports: list[dict[str, Any]] = [{} for _ in range(n)]
    start = threading.Event()
    t0 = [0.0]

    def one(i: int) -> None:
        start.wait()
        delay = t0[0] + i * stagger_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the schedule of starts, not a wait for readiness
        try:
            reports[i] = run_dub(video, out_dir / f"{prefix}{i}.mp4", state, stream_id=f"{prefix}{i}")
        except Exception as exc:  # noqa: BLE001 - reported, not raised from a thread
            reports[i] = {"error": f"{type(exc).__name__}: {exc}"}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    t0[0] = time.monotonic()
    start.set()
    for t in threads:
        t.join()
    return reports


def summarize(reports: list[dict[str, Any]], expected_segments: int) -> dict[str, Any]:
    totals = {"processed": 0, "fallback": 0, "failed": 0}
    reasons: dict[str, int] = {}
    first, last = [], []
    errors = [r["error"] for r in reports if "error" in r]
    for r in reports:
        for k in totals:
            totals[k] += r.get("segments", {}).get(k, 0)
        for code, count in r.get("fallback_reasons", {}).items():
            reasons[code] = reasons.get(code, 0) + count
        series = r.get("latency_series_s", [])
        first += series[:60]
        last += series[-60:]
    lost = expected_segments * len(reports) - sum(totals.values())
    return {"streams": len(reports), "segments": totals, "fallback_reasons": reasons, "lost": lost, "errors": errors,
            "g2g_p95_first_min_s": percentile(sorted(first), 95), "g2g_p95_last_min_s": percentile(sorted(last), 95)}


def shortfalls(s: dict[str, Any], drift: float = 0.10) -> list[str]:
    """Why a summarized run did not hold in real time: any fallback, failed or lost segment, any error,
    or glass-to-glass p95 in the last minute more than ``drift`` above the first minute's (a backlog
    building up). Empty when it held."""
    out = [f"{s['segments'][k]} {k}" for k in ("fallback", "failed") if s["segments"][k]]
    out += [f"{s['lost']} lost"] if s["lost"] else []
    out += [f"{len(s['errors'])} stream errors"] if s["errors"] else []
    first, last = s["g2g_p95_first_min_s"], s["g2g_p95_last_min_s"]
    if last > first * (1 + drift):
        out.append(f"latency drifts: p95 {first:.2f}s -> {last:.2f}s")
    return out


def stack_rss_mb(run_dir: Path, extra_marks: tuple[str, ...] = ()) -> dict[str, float]:
    """Resident memory of each long-lived process of the stack (by its log/run dir or worker tag)."""
    marks = (str(run_dir), *extra_marks)
    out = {}
    for p in psutil.process_iter(["pid", "cmdline", "memory_info"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if any(m in cmd for m in marks) and "ffmpeg" not in cmd:
            out[f"{p.info['pid']}:{cmd[:60]}"] = p.info["memory_info"].rss / 2**20
    return out


def untimed_keys(client: redis.Redis) -> list[str]:
    """Redis keys with no TTL, except the fixed ones (metrics, the stream index, kombu's bindings and
    bookkeeping): what would grow with the number of streams if a TTL were missing."""
    fixed = {"livedub:metrics:counters", "livedub:metrics:histograms", "livedub:streams", "unacked", "unacked_index"}
    keys = []
    for raw in client.scan_iter(count=1000):
        key = raw.decode()
        if key not in fixed and not key.startswith("_kombu.binding") and client.ttl(key) == -1:
            keys.append(key)
    return keys
