"""Load: the soak (N streams for 10 minutes) and the capacity benchmark (the most concurrent streams one
machine holds in real time without fallback). Echo STS unless --engine offline.

    python bench/load.py capacity [--engine echo] [--max 12] [--seconds 30] [--burst] [--from N]
    python bench/load.py soak --streams N [--minutes 10]

Capacity: for N = 1, 2, 3, 4, 6, 8, 10, 12 … it runs N concurrent 30 s streams through one local stack
and counts fallback and failed segments; the figure is the largest N with none. The baseline in the
same run is N = 1. Stream i starts i x 6/N s after the first, so segment boundaries spread over the
segment as independent streams' do; --burst starts all N at the same instant (the worst case: N
segments reach the chain together).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import redis

from worker.load import run_streams, stack_rss_mb, summarize, untimed_keys
from worker.samples import make_video
from worker.stack import LocalStack, StackConfig


def stack_for(tmp: Path, engine: str) -> LocalStack:
    return LocalStack(StackConfig(run_dir=tmp / "run", rtmp_port=0, api_port=0, http_port=0, redis_port=0,
                                  flower_port=0, sts_port=0, engine=engine))


def capacity(engine: str, max_n: int, seconds: int, burst: bool, from_n: int = 2) -> None:
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        video = make_video(tmp / "v.flv", seconds, speech=True)
        stack = stack_for(tmp, engine)
        stack.start()
        best = 0
        starts = "all at once" if burst else "6/N s apart"
        try:
            print(f"{os.cpu_count()} cores, engine {engine}, {seconds}s streams, 6 s segments, starts {starts}")
            print(f"{'streams':>7} {'processed':>9} {'fallback':>8} {'failed':>6} {'lost':>4} {'g2g p95 s':>9}")
            n = 1
            while n <= max_n:
                t0 = time.monotonic()
                stagger = 0.0 if burst else 6.0 / n
                s = summarize(run_streams(stack.state(), video, n, tmp, f"c{n}-", stagger), -(-seconds // 6))
                seg = s["segments"]
                print(f"{n:>7} {seg['processed']:>9} {seg['fallback']:>8} {seg['failed']:>6} {s['lost']:>4} "
                      f"{s['g2g_p95_last_min_s']:>9.2f}   ({time.monotonic() - t0:.0f}s)")
                if seg["fallback"] or seg["failed"] or s["lost"] or s["errors"]:
                    break
                best = n
                n = max(n + 1 if n < 4 else n + 2, from_n)
        finally:
            stack.stop()
    print(f"capacity: {best} concurrent streams in real time without fallback ({engine}, starts {starts}, "
          f"this machine)")


def soak(n: int, minutes: float, engine: str) -> None:
    seconds = int(minutes * 60)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        video = make_video(tmp / "v.flv", seconds, speech=True)
        stack = stack_for(tmp, engine)
        stack.start()
        samples: list[tuple[float, dict[str, float]]] = []
        done = threading.Event()
        try:
            marks = (f"-{stack.tag}@", stack.api_url.split("//")[1])

            def sample() -> None:  # RSS of every stack process every 30 s while the streams run
                t0 = time.monotonic()
                while not done.wait(30):
                    samples.append((time.monotonic() - t0, stack_rss_mb(stack.cfg.run_dir, marks)))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            s = summarize(run_streams(stack.state(), video, n, tmp, "soak", 6.0 / n), -(-seconds // 6))
            done.set()
            leftover = untimed_keys(redis.Redis.from_url(stack.redis_url))
        finally:
            done.set()
            stack.stop()
    print(f"soak: {n} streams x {minutes} min, engine {engine}, starts 6/N s apart")
    print(f"segments {s['segments']}, fallback reasons {s['fallback_reasons']}, lost {s['lost']}, "
          f"errors {s['errors']}")
    print(f"glass-to-glass p95: first minute {s['g2g_p95_first_min_s']:.2f}s, last minute "
          f"{s['g2g_p95_last_min_s']:.2f}s")
    live = [(t, rss) for t, rss in samples if t <= seconds]
    if len(live) >= 2:
        (t_a, a), (t_b, b) = next((x for x in live if x[0] >= 60), live[0]), live[-1]
        print(f"RSS under load at {t_a:.0f}s -> {t_b:.0f}s:")
        for k in sorted(b):
            if k in a:
                print(f"  {a[k]:7.1f} -> {b[k]:7.1f} MB  {k}")
        grew = max((k for k in b if k in a), key=lambda k: b[k] - a[k])
        series = " ".join(f"{rss[grew]:.0f}" for _, rss in live if grew in rss)
        print(f"most growth, every 30 s: {series} MB  {grew}")
    print(f"Redis keys without a TTL (should be none): {leftover}")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("capacity")
    c.add_argument("--engine", default="echo")
    c.add_argument("--max", type=int, default=12)
    c.add_argument("--seconds", type=int, default=30)
    c.add_argument("--burst", action="store_true", help="start all N streams at the same instant")
    c.add_argument("--from", dest="from_n", type=int, default=2, help="after the N = 1 baseline, start at this N")
    s = sub.add_parser("soak")
    s.add_argument("--streams", type=int, default=2)
    s.add_argument("--minutes", type=float, default=10)
    s.add_argument("--engine", default="echo")
    args = ap.parse_args()
    if args.mode == "capacity":
        capacity(args.engine, args.max, args.seconds, args.burst, args.from_n)
    else:
        soak(args.streams, args.minutes, args.engine)


if __name__ == "__main__":
    main()
