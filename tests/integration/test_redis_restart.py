"""Redis restarts mid-stream with no persistence: no hang, no orphans, a clear end, everyone reconnects."""

import os
import signal

import psutil
import pytest
import redis
import requests

from tests.support import local_stack, wait_gone
from worker.devstack.samples import make_video
from worker.media.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=45), pytest.mark.timeout(300)]


def test_redis_restart_mid_stream(tmp_path, media_dir):
    video = make_video(media_dir / "count40.flv", 40, speech=True)
    with local_stack(tmp_path / "run", "--engine", "echo") as stack:
        pub = stack.publish(video, "rr")
        try:
            wait_until(lambda: stack.stream("rr")["published_count"] >= 1, 30, 0.2, "first piece out")
            server = next(p for p in psutil.process_iter(["cmdline"])
                          if "redis-server" in " ".join(p.info["cmdline"] or [])
                          and stack.state["redis_url"].split(":")[-1].split("/")[0] in " ".join(p.info["cmdline"]))
            pipeline_ffmpeg = [p for p in psutil.process_iter(["cmdline"])
                               if "ffmpeg" in " ".join(p.info["cmdline"] or [])
                               and str(stack.run_dir) in " ".join(p.info["cmdline"] or []) or
                               "live//rr/out" in " ".join(p.info["cmdline"] or [])]
            os.kill(server.pid, signal.SIGKILL)  # livedub up starts it again, empty
            client = redis.Redis.from_url(stack.state["redis_url"])
            wait_until(lambda: client.ping(), 20, 0.2, "redis back")
            # The stream ends as failed with a clear reason instead of hanging or vanishing.
            rec = wait_until(lambda: (r := requests.get(f"{stack.api}/v1/streams/rr", timeout=5,
                                                        headers=stack.headers)).status_code == 200
                             and r.json()["state"] == "failed" and r.json(), 60, 0.5, "a failed record")
            assert "registry lost this stream" in rec["reason"], rec
            assert wait_gone(pipeline_ffmpeg, 30) == []  # the reader and the publisher's ffmpeg are gone
        finally:
            pub.kill()
            pub.wait()
        assert requests.get(f"{stack.api}/health", timeout=5).json()["status"] == "ok"  # the API reconnected
        # Workers reconnected: a new stream goes through the whole pipeline again.
        pub2 = stack.publish(make_video(media_dir / "av8rr.flv", 8.0, speech=True), "rr2")
        try:
            rec2 = stack.wait_state("rr2", {"ended", "failed"}, 60)
        finally:
            pub2.kill()
            pub2.wait()
        assert rec2["state"] == "ended" and [s["status"] for s in rec2["segments"]] == ["processed", "processed"]
