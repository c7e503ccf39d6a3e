"""Benchmark: what the object store costs, against the local directory, in the same run.

Two stacks one after the other, the same 36 s speech stream published in real time to each with
`livedub dub`, echo STS:
- directory: `livedub up` as on one machine (segments in a local directory);
- object store: `livedub up --only ...,store` (moto's S3 server on loopback; every stage puts and
  fetches its files there, as pools on separate hosts do).
Per stage (extract, STS round trip, collect, remux, complete -> ready without STS) and glass-to-glass.
Also the raw cost of one 1.5 MB put + fetch on each backend.

    python -m bench.store [--seconds 36]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.pipeline import distributed, stats
from worker.cli.dub import DubReport
from worker.core.settings import load_settings
from worker.core.stats import percentile
from worker.devstack.roles import DEFAULT_ROLES
from worker.devstack.samples import make_video
from worker.devstack.stack import LocalStack, StackConfig
from worker.state.store import SegmentStore, make_store

STAGES = {"extract": "extract (probe + slice)", "sts_rtt": "STS-dispatch round trip",
          "collect": "collect (fetch, fit + mix, put)", "remux": "remux (fetch, piece, put)",
          "overhead": "segment complete -> piece ready, no STS"}


def put_fetch_ms(store: SegmentStore, n: int = 30) -> list[float]:
    src = store.work_dir("bench", "b0") / "piece_00000.ts"
    src.write_bytes(os.urandom(1_500_000))
    out = []
    for _ in range(n):
        t = time.perf_counter()
        key = store.put(src)
        with store.fetch(key) as local:
            local.stat()
        out.append((time.perf_counter() - t) * 1000)
    return out


def run(tmp: Path, video: Path, roles: frozenset[str]) -> tuple[dict[str, list[float]], DubReport, list[float]]:
    stack = LocalStack(StackConfig(run_dir=tmp / "run", rtmp_port=0, api_port=0, http_port=0, redis_port=0,
                                   flower_port=0, sts_port=0, store_port=0, engine="echo", roles=roles))
    stack.start()
    try:
        rows, rep = distributed(stack, video, tmp)
        settings = load_settings(store_url=stack.store_url or "", store_dir=tmp / "scratch", hook_insecure=True)
        raw = put_fetch_ms(make_store(settings))
    finally:
        stack.stop()
    return rows, rep, raw


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=36)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        video = make_video(tmp / "speech.flv", args.seconds, speech=True)
        (tmp / "dir").mkdir()
        (tmp / "obj").mkdir()
        d_rows, d_rep, d_raw = run(tmp / "dir", video, DEFAULT_ROLES)
        o_rows, o_rep, o_raw = run(tmp / "obj", video, DEFAULT_ROLES | {"store"})
    print(f"one stream, {args.seconds}s of speech, 6 s segments, echo STS, {os.cpu_count()} cores")
    print(f"{'stage (ms)':<42} {'directory p50':>13} {'p95':>8} {'n':>4}   | object store p50      p95    n")
    for key, label in STAGES.items():
        print(f"{label:<42}      {stats(d_rows[key])}   |      {stats(o_rows[key])}")
    print(f"{'1.5 MB put + fetch':<42}      {stats(d_raw)}   |      {stats(o_raw)}")
    for name, rep in (("directory", d_rep), ("object store", o_rep)):
        lat = rep.latency_s
        print(f"glass-to-glass, {name:<12} p50 {lat.p50:.2f} s  p95 {lat.p95:.2f} s   segments {rep.segments}")
    cost = percentile(sorted(o_rows["overhead"]), 50) - percentile(sorted(d_rows["overhead"]), 50)
    print(f"object store cost, complete -> ready p50: {cost:+.0f} ms per segment")


if __name__ == "__main__":
    main()
