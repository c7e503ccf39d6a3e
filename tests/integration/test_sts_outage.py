"""The STS service stops for 30 s mid-stream and comes back: fallback, circuit breaker, resume."""

import re
import subprocess
import sys
import time
from contextlib import ExitStack

import pytest
import requests

from tests.support import free_port, local_stack, sts_server
from worker.devstack.samples import make_video
from worker.media.analyze import analyze_file
from worker.media.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=100), pytest.mark.timeout(300)]
TOKEN = "sts-test-token-0123"


def test_sts_down_for_30s_mid_stream(tmp_path, media_dir):
    video = make_video(media_dir / "count60.flv", 60, speech=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with local_stack(tmp_path / "run", "--sts-url", url, env={"LIVEDUB_STS_TOKEN": TOKEN}) as stack, \
            ExitStack() as cleanup:
        first_run = cleanup.enter_context(ExitStack())  # the STS service until the outage
        first_run.enter_context(sts_server("--engine", "echo", port=port))
        dub = subprocess.Popen([sys.executable, "-m", "worker.cli", "dub", str(video), "-o", str(tmp_path / "o.mp4"),
                                "--state-file", str(stack.run_dir / "state.json"), "--stream-id", "outage",
                                "--segment-seconds", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cleanup.callback(lambda: dub.poll() is None and dub.kill())  # never left running by a failed test
        wait_until(lambda: len([s for s in stack.stream("outage")["segments"] if s["status"] == "processed"]) >= 2,
                   40, 0.2, "two dubbed segments")
        first_run.close()  # the service goes away
        down_at = time.time()

        def outage_over() -> bool:  # 30 s down, and the pipeline noticed: segments fall back meanwhile
            fell_back = any(s["status"] == "fallback" for s in stack.stream("outage")["segments"])
            return fell_back and time.time() >= down_at + 30

        wait_until(outage_over, 45, 0.5, "30 s of outage with fallbacks")
        with sts_server("--engine", "echo", port=port):
            up_at = time.time()
            out, err = dub.communicate(timeout=180)
        rec = stack.stream("outage")
        metrics = requests.get(f"{stack.api}/metrics", timeout=5).text
    assert dub.returncode == 0, err + out
    segs = rec["segments"]
    assert all(s["status"] in ("processed", "fallback") for s in segs)
    origin = rec["origin_at"]
    # A segment whose input ended while the service was down had nothing to be dubbed by.
    during = [s for s in segs if down_at + 1 < origin + s["end_s"] < up_at - 1]
    after = [s for s in segs if origin + s["end_s"] > up_at + 4 + 1]  # one 4 s segment after it came back
    assert during and all(s["status"] == "fallback" for s in during), [(s["sequence"], s["reason"]) for s in during]
    assert any(s["reason_code"] == "circuit_open" for s in during), [s["reason_code"] for s in during]
    assert after and all(s["status"] == "processed" for s in after), [(s["sequence"], s["reason"]) for s in after]
    m = re.search(r"^livedub_sts_circuit_open_total (\S+)$", metrics, re.M)
    assert m and float(m.group(1)) >= 1
    assert analyze_file(tmp_path / "o.mp4").check(60.0, 0.1, 25) == []
