"""Load: the soak (N streams for 10 minutes) and the capacity benchmark (the most concurrent streams one
machine holds in real time without fallback). Echo STS unless --engine offline.

    python -m bench.load capacity [--engine echo] [--max 16] [--seconds 600] [--from N] [--burst]
    python -m bench.load soak --streams N [--minutes 10]

Capacity: for N = 1, 2, 3, 4, 6, 8, 10, 12 … it runs N concurrent streams of --seconds (600: as long
as the soak) through one local stack; N holds when no segment falls back, fails or is lost and
glass-to-glass p95 in the last minute is within 10 % of the first minute's (no backlog building up).
The figure is the largest N that holds: the soak's test, at every step. The baseline in the same run is
N = 1, for 120 s. Shorter steps overstate it: 14 echo streams held for 120 s, but 84 of 1,400 segments
fell back in 10 minutes (`--seconds 120` is a quick upper bound). Stream i starts i/N of a 6 s segment
and i/N of a 2 s keyframe interval after the first (`bench.support.load.start_offsets`), so segment
boundaries and keyframes spread as independent streams' do; --burst starts all N at the same instant (the
worst case: N segments reach the chain together). The soak's --aligned starts them i x 6/N s apart, as
before 2026-11-29: with N = 3 every stream's keyframes fall at the same instants.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import threading
import time
from pathlib import Path

import redis

from bench.speech import NEWS
from bench.support.load import by_window, run_streams, shortfalls, stack_rss_mb, start_offsets, summarize
from worker.cli.dub import DubReport
from worker.core.segments import SegmentStatus
from worker.core.stats import percentile
from worker.devstack.samples import make_video
from worker.devstack.stack import LocalStack, StackConfig
from worker.state.registry import StreamRegistry

BASELINE_S = 120


def stack_for(tmp: Path, engine: str) -> LocalStack:
    return LocalStack(StackConfig(run_dir=tmp / "run", rtmp_port=0, api_port=0, http_port=0, redis_port=0,
                                  flower_port=0, sts_port=0, engine=engine))


def capacity(engine: str, max_n: int, seconds: int, burst: bool, from_n: int = 2) -> None:
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        video = make_video(tmp / "v.flv", seconds, speech=True)
        short = min(seconds, BASELINE_S)  # the N = 1 baseline: latency needs no long run
        baseline = make_video(tmp / "b.flv", short, speech=True) if short < seconds else video
        stack = stack_for(tmp, engine)
        stack.start()
        best = 0
        starts = "all at once" if burst else "i/N of a segment and of a keyframe interval apart"
        try:
            print(f"{os.cpu_count()} cores, engine {engine}, {seconds}s streams, 6 s segments, starts {starts}")
            print(f"{'streams':>7} {'processed':>9} {'fallback':>8} {'failed':>6} {'lost':>4} "
                  f"{'p95 first min':>13} {'p95 last min':>12}")
            n = 1
            while n <= max_n:
                t0 = time.monotonic()
                offsets = [] if burst else start_offsets(n)
                src, length = (baseline, short) if n == 1 else (video, seconds)
                s = summarize(run_streams(stack.state(), src, n, tmp, f"c{n}-", offsets), length)
                seg = s.segments
                print(f"{n:>7} {seg.processed:>9} {seg.fallback:>8} {seg.failed:>6} {s.lost:>4} "
                      f"{s.g2g_p95_first_min_s:>12.2f}s {s.g2g_p95_last_min_s:>11.2f}s  "
                      f"({time.monotonic() - t0:.0f}s)")
                if why := shortfalls(s):
                    print(f"{n} streams do not hold: {', '.join(why)}")
                    break
                best = n
                n = max(n + 1 if n < 4 else n + 2, from_n)
        finally:
            stack.stop()
    print(f"capacity: {best} concurrent streams in real time without fallback or drift ({engine}, {seconds}s "
          f"streams, starts {starts}, this machine)")


def soak(n: int, minutes: float, engine: str, news: bool = False, aligned: bool = False) -> None:
    seconds = int(minutes * 60)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        text = " ".join(NEWS * (seconds // 45 + 1)) if news else None  # sentences, as a news reader says them
        video = make_video(tmp / "v.flv", seconds, speech=True, text=text)
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
            offsets = [i * 6.0 / n for i in range(n)] if aligned else start_offsets(n)
            reports = run_streams(stack.state(), video, n, tmp, "soak", offsets)
            s = summarize(reports, seconds)
            done.set()
            client = redis.Redis.from_url(stack.redis_url)
            reg = StreamRegistry(client)
            leftover = reg.untimed_keys()
            redis_mb = int(client.info("memory")["used_memory"]) / 1e6
            records = [r for i in range(n) if (r := reg.get(f"soak{i}")) is not None]
        finally:
            done.set()
            stack.stop()
    print(f"soak: {n} streams x {minutes} min, engine {engine}, starts at {[round(o, 2) for o in offsets]} s")
    print(f"segments {s.segments}, fallback reasons {s.fallback_reasons}, lost {s.lost}, errors {s.errors}")
    if s.units.processed + s.units.fallback + s.units.failed:
        print(f"speech units {s.units}, fallback reasons {s.unit_fallback_reasons}; unit fallbacks per stream-minute "
              f"{(s.units.fallback + s.units.failed) / (n * minutes):.2f}")
    for rep in reports:  # each output whole and in sync at its end, not only at its start
        if isinstance(rep, DubReport) and rep.output is not None:
            o = rep.output
            print(f"{rep.stream_id}: output {o.duration_s:.1f}s of {seconds}s, A/V offset start/end "
                  f"{o.av_offset_start_ms}/{o.av_offset_end_ms} ms, problems {o.problems or 'none'}")
    print(f"glass-to-glass p95: first minute {s.g2g_p95_first_min_s:.2f}s, last minute "
          f"{s.g2g_p95_last_min_s:.2f}s")
    if minutes >= 20:  # an hour's soak: every ten minutes, not only the first and the last
        delays = [r.latency_series_s for r in reports if isinstance(r, DubReport)]
        print("glass-to-glass p95 by 10 minutes: " + " ".join(f"{v:.2f}" for v in by_window(delays, 600)) + " s")
        falls = [0] * math.ceil(seconds / 600)
        for u in (u for r in records for u in r.units if u.status is not SegmentStatus.PROCESSED):
            falls[min(int(u.start_s // 600), len(falls) - 1)] += 1
        print(f"units fallen back (or failed) by 10 minutes: {falls}")
    units = [u for r in records for u in r.units]
    if trips := sorted(u.placed_at - u.closed_at for u in units if u.placed_at and u.closed_at):
        lengths = sorted(u.end_s - u.start_s for u in units)
        print(f"unit round trips (close to placed) p50/p90/max {percentile(trips, 50):.2f}/{percentile(trips, 90):.2f}/"
              f"{trips[-1]:.2f}s; unit length p50/p90 {percentile(lengths, 50):.2f}/{percentile(lengths, 90):.2f}s, "
              f"{sum(u.cut.value == 'quiet' for u in units)} of {len(units)} cut inside speech; STS estimate at "
              f"the end {[r.sts_estimate_s for r in records]}, hearing {[r.hear_estimate_s for r in records]}")
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
        grown = [k for k in b if k in a and b[k] > a[k] * 1.10 + 5]
        print(f"RSS flat (within 10 % + 5 MB of the 60 s sample): {'yes' if not grown else 'no, ' + str(grown)}")
    print(f"Redis keys without a TTL (should be none): {leftover}; Redis memory at the end {redis_mb:.1f} MB")
    why = shortfalls(s)
    print(f"segments and latency hold: {'yes' if not why else 'no: ' + ', '.join(why)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("capacity")
    c.add_argument("--engine", default="echo")
    c.add_argument("--max", type=int, default=16)
    c.add_argument("--seconds", type=int, default=600, help="each step's stream length (the N = 1 baseline: 120 s)")
    c.add_argument("--burst", action="store_true", help="start all N streams at the same instant")
    c.add_argument("--from", dest="from_n", type=int, default=2, help="after the N = 1 baseline, start at this N")
    s = sub.add_parser("soak")
    s.add_argument("--streams", type=int, default=2)
    s.add_argument("--minutes", type=float, default=10)
    s.add_argument("--engine", default="echo")
    s.add_argument("--news", action="store_true", help="news-style sentences (bench.speech's) instead of counting")
    s.add_argument("--aligned", action="store_true",
                   help="start streams i x 6/N s apart, as before 2026-11-29 (3 streams: keyframes at one instant)")
    args = ap.parse_args()
    if args.mode == "capacity":
        capacity(args.engine, args.max, args.seconds, args.burst, args.from_n)
    else:
        soak(args.streams, args.minutes, args.engine, args.news, args.aligned)


if __name__ == "__main__":
    main()
