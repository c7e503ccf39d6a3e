"""Pipeline fault cases, each with real processes: the output stays complete and in sync."""


import pytest

from tests.support import dub_report, free_port, local_stack, sts_server
from worker.devstack.samples import make_video
from worker.media.analyze import analyze_file

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=170), pytest.mark.timeout(300)]
TOKEN = "sts-test-token-0123"



@pytest.fixture(scope="module")
def speech_12s(media_dir):
    return make_video(media_dir / "count12.flv", 12, speech=True)


def test_sts_unreachable_the_whole_time_gives_a_complete_fallback_output(tmp_path, speech_12s):
    dead = f"http://127.0.0.1:{free_port()}"
    with local_stack(tmp_path / "run", "--sts-url", dead, env={"LIVEDUB_STS_TOKEN": TOKEN}) as stack:
        rep = dub_report(stack, speech_12s, tmp_path / "out.mp4", "nosts")
        rec = stack.stream("nosts")
    assert rec["state"] == "ended", rec["reason"]
    assert [s["status"] for s in rec["segments"]] == ["fallback", "fallback"]
    # The first segment finds the service unreachable; the circuit breaker then fails fast.
    assert all(s["reason_code"] in ("sts_unreachable", "circuit_open") for s in rec["segments"]), \
        [(s["reason_code"], s["reason"]) for s in rec["segments"]]
    assert rep["segments"] == {"processed": 0, "fallback": 2, "failed": 0}
    assert analyze_file(tmp_path / "out.mp4").check(12.0, 0.1, 25) == []


def test_one_fragment_after_its_deadline_falls_back_alone(tmp_path, media_dir):
    video = make_video(media_dir / "count18.flv", 18, speech=True)
    with sts_server("--engine", "echo", "--workers", "2", "--echo-delay", "1=6000") as url, \
            local_stack(tmp_path / "run", "--sts-url", url, env={"LIVEDUB_STS_TOKEN": TOKEN}) as stack:
        rep = dub_report(stack, video, tmp_path / "out.mp4", "late1")
        rec = stack.stream("late1")
    statuses = [s["status"] for s in rec["segments"]]
    assert statuses == ["processed", "fallback", "processed"], rec["segments"]
    assert rec["segments"][1]["reason_code"] == "sts_timeout", rec["segments"][1]
    assert rep["segments"] == {"processed": 2, "fallback": 1, "failed": 0}
    assert analyze_file(tmp_path / "out.mp4").check(18.0, 0.1, 25) == []


@pytest.fixture(scope="module")
def echo_stack(tmp_path_factory):
    with local_stack(tmp_path_factory.mktemp("faults") / "run", "--engine", "echo") as stack:
        yield stack


def test_input_stopped_mid_segment_ends_cleanly(echo_stack, tmp_path, media_dir):
    video = make_video(media_dir / "av9.flv", 9.0, speech=True)
    rep = dub_report(echo_stack, video, tmp_path / "out.mp4", "short9")
    rec = echo_stack.stream("short9")
    assert rec["state"] == "ended"
    assert [round(s["end_s"] - s["start_s"]) for s in rec["segments"]] == [6, 3]
    assert rep["segments"] == {"processed": 2, "fallback": 0, "failed": 0}
    assert analyze_file(tmp_path / "out.mp4").check(9.0, 0.1, 25) == []


@pytest.mark.parametrize("kind,reason", [("audio-only", "no video track"), ("video-only", "no audio track")])
def test_input_without_a_track_fails_with_a_reason(echo_stack, media_dir, kind, reason):
    video = make_video(media_dir / f"{kind}.flv", 8.0, audio=kind == "audio-only", video=kind == "video-only")
    sid = kind.replace("-", "")
    pub = echo_stack.publish(video, sid)
    try:
        rec = echo_stack.wait_state(sid, {"failed", "ended"}, 30)
    finally:
        pub.kill()
        pub.wait()
    assert rec["state"] == "failed" and reason in rec["reason"], rec["reason"]


def test_slow_sts_keeps_the_output_live_and_queues_bounded(tmp_path, media_dir):
    """Every fragment takes 1.5x real time: segments fall back on time, the STS queue stays bounded."""
    import requests

    video = make_video(media_dir / "count24.flv", 24, speech=True)
    with sts_server("--engine", "echo", "--echo-delay-factor", "1.5") as url, \
            local_stack(tmp_path / "run", "--sts-url", url, env={"LIVEDUB_STS_TOKEN": TOKEN}) as stack:
        rep = dub_report(stack, video, tmp_path / "out.mp4", "slow")
        health = requests.get(f"{url}/health", timeout=5).json()
        rec = stack.stream("slow")
    assert rec["state"] == "ended"
    assert rep["segments"]["failed"] == 0 and rep["segments"]["fallback"] >= 3, rep["segments"]
    assert rep["latency_s"]["p95"] < 10.0, rep["latency_s"]  # the output does not fall behind
    assert health["queue_depth"] <= 8 and health["inflight"] <= 8, health
    assert analyze_file(tmp_path / "out.mp4").check(24.0, 0.1, 25) == []
