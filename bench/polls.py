"""Benchmark: what the ingest's and the publisher's polls cost as a stream ages, the way they read now
against the way they read before 2026-11-29, in the same run.

- The ingest reads the reader's segment list five times a second (speech mode: a piece a keyframe, 1,800
  entries an hour). Before: the whole file parsed each poll. Now: the lines added since the last poll.
- The publisher looks for when its ffmpeg put out the next piece in the progress log (4 samples a second)
  at every turn of its loop (at least 10 a second). Before: the list of all media times built each time.
  Now: a binary search on what the pieces to come still need.

For a stream 1 minute, 1 hour and 10 hours old: microseconds a poll, and the CPU share of three
streams polling at those rates.

    python -m bench.polls
"""

from __future__ import annotations

import tempfile
import time
from bisect import bisect_left
from collections.abc import Callable
from pathlib import Path

from worker.media.parse import parse_segment_list
from worker.media.progress import wall_at
from worker.pipeline.reader_steps import SegmentListTail

AGES_S = (60, 3600, 36000)
LIST_POLLS_S = 5  # the ingest's polls a second (POLL_S 0.2)
PIECE_S = 2.0
PROGRESS_RATE = 4  # the publisher's ffmpeg -stats_period 0.25
PUBLISHER_POLLS_S = 10  # the publisher's loop looks at the next piece every 0.02-0.1 s (poll_delay): at least


def per_call_us(fn: Callable[[], object], seconds: float = 0.5) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n * 1e6


def old_wall_at(points: list[tuple[float, float]], media_s: float) -> float | None:
    times = [m for _, m in points]  # the list built every call, as before
    i = bisect_left(times, media_s)
    return None if i >= len(points) else points[i][0]


def one_age(path: Path, age: int) -> tuple[float, float, float, float]:
    """Microseconds a poll for a stream ``age`` seconds old: the list whole, its tail, wall_at before, now."""
    n = int(age / PIECE_S)
    path.write_text("".join(f"seg_{i:05d}.ts,{i * PIECE_S:.6f},{(i + 1) * PIECE_S:.6f}\n" for i in range(n)))
    tail = SegmentListTail()
    tail.read(path)  # caught up: a poll reads what was added since (here nothing)
    whole = per_call_us(lambda: parse_segment_list(path.read_text()))
    new = per_call_us(lambda: tail.read(path))
    points = [(1000.0 + i / PROGRESS_RATE, i / PROGRESS_RATE) for i in range(age * PROGRESS_RATE)]
    kept = points[-12 * PROGRESS_RATE:]  # what forget_before leaves: the samples since the last piece out
    ask = age - 3.0  # a piece about to go out
    return whole, new, per_call_us(lambda: old_wall_at(points, ask)), per_call_us(lambda: wall_at(kept, ask))


def main() -> None:
    print(f"{'age':>6} {'list: whole':>12} {'list: tail':>11} {'wall_at: before':>16} {'wall_at: now':>13}  "
          "3 streams' CPU share before -> now")
    with tempfile.TemporaryDirectory() as tmp:
        for age in AGES_S:
            whole, new, before, now = one_age(Path(tmp) / "list.csv", age)
            share_before = 3 * (whole * LIST_POLLS_S + before * PUBLISHER_POLLS_S) / 1e6
            share_now = 3 * (new * LIST_POLLS_S + now * PUBLISHER_POLLS_S) / 1e6
            print(f"{age:>5}s {whole:>10.0f}us {new:>9.0f}us {before:>14.0f}us {now:>11.1f}us  "
                  f"{share_before:.2%} -> {share_now:.2%} of a core")


if __name__ == "__main__":
    main()
