"""Benchmark: hook answer latency and hook -> job start, on a real local stack.

Baseline measured in the same run: GET /health through the same gunicorn (the floor of any request).
The MediaMTX ready hook is used for answer latency because it has no deliberate wait; the nginx-rtmp
publish hook holds its answer for the job's reader by design, so it is not timed here.

    python -m bench.hooks [--n 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import redis
import requests

from worker.devstack.stack import LocalStack, StackConfig
from worker.state.registry import StreamRegistry


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{name:<34} {pct(ms, 50):8.1f} {pct(ms, 95):8.1f} {max(ms):8.1f} {len(ms):5d}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(StackConfig(run_dir=Path(tmp) / "run", rtmp_port=0, api_port=0, http_port=0,
                                       redis_port=0, flower_port=0))
        stack.start()
        try:
            run(stack, args.n)
        finally:
            stack.stop()


def run(stack: LocalStack, n: int) -> None:
    api, headers = stack.api_url, {"X-Livedub-Secret": stack.secret}
    reg = StreamRegistry(redis.Redis.from_url(stack.redis_url))
    session = requests.Session()
    health, answer, to_job = [], [], []
    for _ in range(5):  # warm-up
        session.get(f"{api}/health", timeout=5)
    for i in range(n):
        t0 = time.perf_counter()
        session.get(f"{api}/health", timeout=5).raise_for_status()
        health.append(time.perf_counter() - t0)

        sid = f"bench{i}"
        t0 = time.perf_counter()
        resp = session.post(f"{api}/v1/hooks/mediamtx/ready", json={"MTX_PATH": f"live/{sid}/in"},
                            headers=headers, timeout=10)
        answer.append(time.perf_counter() - t0)
        assert resp.status_code == 202, resp.text
        deadline = time.perf_counter() + 10
        while (rec := reg.get(sid, with_segments=False)) is None or rec.input_url is None:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"job for {sid} did not start")
            time.sleep(0.002)
        to_job.append(time.perf_counter() - t0)
        session.delete(f"{api}/v1/streams/{sid}", headers={"Authorization": f"Bearer {stack.operator_token}"},
                       timeout=10).raise_for_status()
    print(f"{'measure (ms)':<34} {'p50':>8} {'p95':>8} {'max':>8} {'n':>5}")
    print(row("baseline: GET /health", health))
    print(row("hook answer (mediamtx ready)", answer))
    print(row("hook -> job started on ingest", to_job))
    print(f"hook answer overhead over baseline, p50: {(pct(answer, 50) - pct(health, 50)) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
