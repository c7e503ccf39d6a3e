"""Benchmark: what one read of a stream's record (`GET /v1/streams/<id>`) costs as the stream ages, the
way it reads now against the way it read before 2026-12-07, in the same run, against a real Redis.

A speech-mode stream has about 1,800 pieces and 1,100 units an hour, each with its transcript, its
translation and its timings. The dashboard reads the selected stream's record every 2 s, `livedub dub` every
0.3 s until the stream ends. Before: every segment and unit, every read. Now: the newest 500 of each by
default, 120 for the dashboard, none for `livedub dub`'s polls (`limit=0`; it pages through them once, at
the end).

For a stream 1 minute, 1 hour and 10 hours old: ms a read (Redis, parse, JSON) and its size, each way.

    python -m bench.records
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import redis
from flask import Flask, jsonify

from worker.core.paging import Page
from worker.core.segments import Segment, SegmentStatus
from worker.core.speech import CutKind
from worker.core.units import Unit
from worker.devstack.stack import LocalStack, StackConfig
from worker.state.pages import read_page
from worker.state.registry import StreamRegistry
from worker.state.units import UnitBook

AGES_S = (60, 3600, 36000)
PIECE_S, UNITS_PER_HOUR = 2.0, 1100
TEXT = "The city council met this afternoon to discuss the new budget for next year."
SPANISH = "El consejo municipal se reunió esta tarde para discutir el nuevo presupuesto del año que viene."
TIMINGS = {"extract": 41.0, "sts_rtt": 912.0, "collect": 150.0, "remux": 230.0}


@contextmanager
def redis_server() -> Iterator[redis.Redis]:
    """The local stack's Redis, alone."""
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(StackConfig(run_dir=Path(tmp) / "run", rtmp_port=0, api_port=0, http_port=0,
                                       redis_port=0, flower_port=0, roles=frozenset({"redis"})))
        stack.start()
        try:
            yield redis.Redis.from_url(stack.redis_url)
        finally:
            stack.stop()


def fill(reg: StreamRegistry, sid: str, age_s: int) -> None:
    """A speech-mode stream ``age_s`` old: its pieces and units done, with their texts and timings."""
    reg.start(sid, f"rtmp://127.0.0.1/live/{sid}/in")
    book = UnitBook(reg)
    for seq in range(int(age_s / PIECE_S)):
        reg.add_segment(sid, Segment(sequence=seq, start_s=seq * PIECE_S, end_s=(seq + 1) * PIECE_S,
                                     file=f"{sid}/j/seg_{seq:05d}.ts", status=SegmentStatus.PROCESSED,
                                     timings_ms=TIMINGS, piece=f"{sid}/j/piece_{seq:05d}.ts",
                                     deadline_at=1e9 + seq, sealed_at=1e9 + seq, published_at=1e9 + seq), 1)
    step = 3600 / UNITS_PER_HOUR
    for seq in range(int(age_s / 3600 * UNITS_PER_HOUR)):
        book.add(sid, Unit(sequence=seq, start_s=seq * step, end_s=seq * step + 2.6, cut=CutKind.PAUSE,
                           status=SegmentStatus.PROCESSED, transcript=TEXT, translated_text=SPANISH,
                           timings_ms=TIMINGS, closed_at=1e9 + seq, deadline_at=1e9 + seq, dub_start_s=seq * step,
                           dub_end_s=seq * step + 2.7, lag_s=0.0, stretch_ratio=1.04, placed_at=1e9 + seq,
                           dub_key=f"{sid}/j/placed_u{seq:05d}.pcm"))


def timed_ms(fn: Callable[[], bytes], seconds: float = 1.0) -> tuple[float, int]:
    n, size, t0 = 0, 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        size = len(fn())
        n += 1
    return (time.perf_counter() - t0) / n * 1e3, size


def main() -> None:
    app = Flask("bench")
    ways: dict[str, Callable[[StreamRegistry, str], bytes]] = {
        "before (all)": _before,
        "now, default": lambda reg, sid: _page(reg, sid, Page()),
        "dashboard": lambda reg, sid: _page(reg, sid, Page(limit=120)),
        "dub's poll": lambda reg, sid: _page(reg, sid, Page(limit=0)),
    }
    print(f"{'age':>6} " + " ".join(f"{w:>22}" for w in ways) + "   (ms a read, KB)")
    with redis_server() as client, app.app_context():
        reg = StreamRegistry(client)
        for age in AGES_S:
            sid = f"age{age}"
            fill(reg, sid, age)
            cells = [timed_ms(partial(way, reg, sid)) for way in ways.values()]
            print(f"{age / 3600:5.2f}h " + " ".join(f"{ms:12.2f} ms {kb / 1024:6.0f} KB" for ms, kb in cells))
            before, dash = cells[0][0], cells[2][0]
            print(f"       a dashboard polling every 2 s: {before / 20:.2f} % of a core before, {dash / 20:.2f} % now")


def _before(reg: StreamRegistry, sid: str) -> bytes:
    """The read as it was: the record with every segment and unit."""
    rec = reg.get(sid)
    assert rec is not None
    return jsonify(rec.model_dump(mode="json")).get_data()


def _page(reg: StreamRegistry, sid: str, page: Page) -> bytes:
    rec = read_page(reg, sid, page)
    assert rec is not None
    return jsonify(rec.model_dump(mode="json")).get_data()


if __name__ == "__main__":
    main()
