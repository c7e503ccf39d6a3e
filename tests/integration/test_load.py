"""Two concurrent streams for two minutes (the suite's version of the 10-minute soak in bench/load.py)."""

import pytest
import redis

from bench.support.load import run_streams, shortfalls, stack_rss_mb, summarize
from tests.support import local_stack
from worker.cli.dub import DubReport
from worker.devstack.samples import make_video
from worker.state.registry import StreamRegistry

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=150), pytest.mark.solo, pytest.mark.timeout(420)]


def test_two_streams_for_two_minutes(tmp_path, media_dir):
    video = make_video(media_dir / "count120.flv", 120, speech=True)
    # Real time on a slow 2-core host (process start 0.14 s): with fixed mode's default 2.0 s budget, 4 of 40
    # segments were late in one of two runs there (docs/reliability.md); the test is about holding real time
    # without drift or leaks, so the chain gets 3 s, as `livedub up --engine offline` gives it.
    with local_stack(tmp_path / "run", "--engine", "echo", env={"LIVEDUB_LATENCY_BUDGET_S": "3"}) as stack:
        tag = next(iter(stack.state["worker_names"].values())).split("@")[0].split("-")[-1]
        marks = (f"-{tag}@", stack.state["api_url"].split("//")[1], stack.state["sts_url"].split(":")[-1])
        rss_before = stack_rss_mb(stack.run_dir, marks)
        reports = run_streams(stack.state, video, 2, tmp_path, "load")
        rss_after = stack_rss_mb(stack.run_dir, marks)
        leftover = StreamRegistry(redis.Redis.from_url(stack.state["redis_url"])).untimed_keys()
    s = summarize(reports, 120)
    print(s)
    assert shortfalls(s) == [], s  # no fallback, failed or lost segment, no error, p95 drift within 10 %
    for r in reports:
        assert isinstance(r, DubReport) and r.output is not None, r
        assert r.output.duration_s == pytest.approx(120.0, abs=0.1) and not r.output.problems
    grown = {k: (rss_before[k], v) for k, v in rss_after.items() if k in rss_before and v > rss_before[k] * 1.25 + 20}
    assert not grown, grown
    assert leftover == [], leftover
