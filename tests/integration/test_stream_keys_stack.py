"""The attacks of docs/security.md against a real stack (`livedub up`: nginx-rtmp, real Redis, the API) with real
ffmpeg publishers and players: no key, a wrong key, taking over a live input, taking over the output, reading
the input, reading the API without a token."""

import subprocess

import pytest
import requests

from tests.support import local_stack, publish
from worker.devstack.samples import make_video
from worker.media.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=35), pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with local_stack(tmp_path_factory.mktemp("keys") / "run", "--engine", "echo") as s:
        yield s


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("media") / "keys20.flv", 20, speech=True)


def refused_quickly(proc: subprocess.Popen[bytes]) -> str:
    """The publisher or player was turned away: it exits non-zero within seconds. Its error text."""
    assert proc.wait(15) != 0
    return proc.stderr.read().decode(errors="replace") if proc.stderr else ""


def play(url: str) -> subprocess.Popen[bytes]:
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout", "10000000", "-i", url,
            "-t", "2", "-f", "null", "-"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_the_state_file_names_the_operator_token_and_the_stack_is_closed(stack):
    assert stack.state["operator_token"] and stack.state["open_publishing"] is False
    assert requests.get(f"{stack.api}/health", timeout=5).json()["open_publishing"] is False
    assert requests.get(f"{stack.api}/v1/streams", timeout=5).status_code == 401  # 5: reading without a token


def test_no_key_and_a_wrong_key_are_refused_before_any_job(stack, video):
    stack.key_for("kcam")
    refused_quickly(publish(video, stack.state["rtmp_url"], "kcam"))  # 1: no key
    refused_quickly(publish(video, stack.state["rtmp_url"], "kcam", key="0" * 32))  # 2: a wrong key
    refused_quickly(publish(video, stack.state["rtmp_url"], "stranger", key="0" * 32))  # an unknown stream
    assert stack.stream("kcam")["state"] == "created"  # no job ran
    metrics = requests.get(f"{stack.api}/metrics", timeout=5).text
    assert 'livedub_publishes_refused_total{reason="bad_key"} 3.0' in metrics


def test_a_live_input_and_its_output_cannot_be_taken_over(stack, video):
    owner = stack.publish(video, "ktake")
    try:
        stack.wait_state("ktake", {"live"}, 30)
        base = stack.state["rtmp_url"]
        refused_quickly(publish(video, base, "ktake", key="0" * 32))  # 3: taking over the input
        # 4: taking over the output (from loopback, like every local process: the key is what counts)
        refused_quickly(subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i",
                                          str(video), "-c", "copy", "-f", "flv", f"{base}/live//ktake/out"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        refused_quickly(play(f"{base}/live//ktake/in"))  # the raw input is livedub's reader's only
        assert stack.stream("ktake")["state"] == "live" and owner.poll() is None  # the owner goes on
        viewer = play(f"{base}/live//ktake/out")  # the dub itself is public
        wait_until(lambda: stack.stream("ktake")["published_count"] >= 1, 40, 0.3, "the output")
        assert viewer.wait(40) == 0
    finally:
        owner.kill()
        owner.wait()


def test_a_stream_with_no_keyframes_is_stopped_with_the_reason(stack, tmp_path):
    # 7: 40 s with one keyframe (an encoder whose keyframe interval is off), 4 s segments
    video = tmp_path / "nokey.flv"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=f=300:sample_rate=48000", "-t", "40",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "100000", "-keyint_min", "100000",
                    "-sc_threshold", "0", "-c:a", "aac", "-f", "flv", str(video)], check=True)
    key = stack.key_for("nokey", segment_seconds=4)
    pub = publish(video, stack.state["rtmp_url"], "nokey", key=key)
    try:
        rec = stack.wait_state("nokey", {"failed", "ended"}, 40)
    finally:
        pub.kill()
        pub.wait()
    assert rec["state"] == "failed" and "no keyframe for" in rec["reason"], rec["reason"]
    assert rec["segment_count"] == 0  # nothing was cut, nothing grew past the limit
    metrics = requests.get(f"{stack.api}/metrics", timeout=5).text
    assert 'livedub_limit_stops_total{limit="keyframe"} 1.0' in metrics
