"""The local stack as a user runs it: `livedub up`, a real publisher, real nginx-rtmp, workers."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.support import local_stack, wait_gone
from worker.media.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=80), pytest.mark.timeout(240)]
HOOK = Path(__file__).resolve().parents[2] / "compose" / "mediamtx-hook.sh"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("stack") / "run"
    with local_stack(run_dir, "--engine", "echo") as s:
        yield s
    # Ctrl-C / SIGTERM stops every child: nothing of the stack is left.
    assert s.proc.returncode == 0
    assert wait_gone(s.processes(), 10) == []


def test_publish_lifecycle_from_first_keyframe_to_ended(stack, video_8s):
    pub = stack.publish(video_8s, "life1")
    rec = wait_until(lambda: stack.stream("life1") if _ok(stack, "life1") else None, 10, 0.1, "registered")
    assert rec["state"] in ("starting", "live")
    assert pub.wait(30) == 0, pub.stderr.read()
    rec = stack.wait_state("life1", {"ended", "failed"}, 30)
    assert rec["state"] == "ended", rec["reason"]
    assert rec["reason"] == "input ended"
    # starting -> live -> draining -> ended, each step stamped in order
    stamps = [rec[k] for k in ("created_at", "reader_connected_at", "live_at", "draining_at", "ended_at")]
    assert None not in stamps and stamps == sorted(stamps), stamps
    segs = rec["segments"]
    # 8 s at a keyframe every 2 s, cut at 6 s: two segments, and nothing lost from the first frame.
    assert [s["sequence"] for s in segs] == [0, 1]
    assert segs[0]["start_s"] == pytest.approx(0.0, abs=0.05)
    assert segs[-1]["end_s"] == pytest.approx(8.0, abs=0.1)
    assert rec["media_seconds"] == pytest.approx(8.0, abs=0.1)
    for s in segs:
        assert (stack.run_dir / "store" / s["file"]).stat().st_size > 0
    listing = requests.get(f"{stack.api}/v1/streams", timeout=5, headers=stack.headers).json()["streams"]
    assert "life1" in {s["stream_id"] for s in listing}


def _ok(stack, sid):
    """A job registered the stream (before that it is only "created", with its key)."""
    resp = requests.get(f"{stack.api}/v1/streams/{sid}", timeout=5, headers=stack.headers)
    return resp.status_code == 200 and resp.json()["state"] != "created"


def test_operator_stop_ends_the_stream_and_its_reader(stack, video_20s):
    pub = stack.publish(video_20s, "stop1")
    try:
        stack.wait_state("stop1", {"live"}, 10)
        # the hook secret is not an operator's token; neither is a viewer's
        assert requests.delete(f"{stack.api}/v1/streams/stop1", headers={"X-Livedub-Secret": stack.secret},
                               timeout=5).status_code == 401
        viewer = {"Authorization": f"Bearer {stack.state['viewer_token']}"}
        assert requests.delete(f"{stack.api}/v1/streams/stop1", headers=viewer, timeout=5).status_code == 403
        resp = requests.delete(f"{stack.api}/v1/streams/stop1", headers=stack.headers, timeout=5)
        assert resp.status_code == 202
        rec = stack.wait_state("stop1", {"ended", "failed"}, 15)
        assert rec["state"] == "ended" and rec["reason"] == "stopped by operator"
        assert not [p for p in stack.processes() if "stop1" in " ".join(p.cmdline()) and "ffmpeg" in p.name()]
    finally:
        pub.kill()
        pub.wait()


def test_mediamtx_hook_script_drives_the_api(stack, tmp_path):
    # curl and wget as the script finds them, recording their arguments: the secret must not be among them
    spy = tmp_path / "bin"
    spy.mkdir()
    for tool in ("curl", "wget"):
        real = shutil.which(tool)
        if real:
            (spy / tool).write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/argv.log\nexec {real} "$@"\n')
            (spy / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{spy}:{os.environ['PATH']}", "LIVEDUB_API_URL": stack.api,
           "LIVEDUB_HOOK_SECRET_FILE": stack.state["hook_secret_file"],
           "MTX_PATH": "live/mtx1/in", "MTX_SOURCE_TYPE": "rtmpConn", "MTX_SOURCE_ID": "x&y=z",
           "MTX_QUERY": "a=1&b=caf\u00e9"}
    out = subprocess.run(["sh", str(HOOK), "ready"], env=env, capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    argv = (tmp_path / "argv.log").read_text()
    assert "/v1/hooks/mediamtx/ready" in argv and stack.secret not in argv
    assert stack.stream("mtx1")["source"] == "mediamtx:rtmpConn"
    out = subprocess.run(["sh", str(HOOK), "not-ready"], env=env, capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert stack.stream("mtx1")["state"] in ("draining", "ended", "failed")
    bad = subprocess.run(["sh", str(HOOK), "ready"], env={**env, "LIVEDUB_HOOK_SECRET_FILE": "/dev/null"},
                         capture_output=True, timeout=20)
    assert bad.returncode != 0  # 401 makes the hook command fail


@pytest.mark.parametrize("sid,mtx_query", [
    # exactly what MediaMTX >= 1.18.1 sets for runOnAvailable (internal/hooks/on_available.go): MTX_QUERY is
    # url.QueryEscape(query), here written out by hand for ?target_language=fr&segment_seconds=4&voice_profile=female
    ("mtxnew", "target_language%3Dfr%26segment_seconds%3D4%26voice_profile%3Dfemale"),
    ("mtxold", "target_language=fr&segment_seconds=4&voice_profile=female"),  # releases before: as it came
])
def test_the_stream_options_survive_mediamtx_query_escaping(stack, sid, mtx_query):
    env = {"PATH": os.environ["PATH"], "LIVEDUB_API_URL": stack.api,
           "LIVEDUB_HOOK_SECRET_FILE": stack.state["hook_secret_file"],
           # path.go ExternalCmdEnv() and on_available.go: the whole environment MediaMTX gives the command
           "MTX_PATH": f"live/{sid}/in", "RTSP_PATH": f"live/{sid}/in", "RTSP_PORT": "8554",
           "MTX_QUERY": mtx_query, "MTX_SOURCE_TYPE": "rtmpConn", "MTX_SOURCE_ID": "4f8b2a30-1c2d-4e5f"}
    out = subprocess.run(["sh", str(HOOK), "ready"], env=env, capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    rec = stack.stream(sid)
    assert (rec["target_language"], rec["segment_seconds"], rec["voice_profile"]) == ("fr", 4.0, "female")
    assert subprocess.run(["sh", str(HOOK), "not-ready"], env=env, capture_output=True, timeout=20).returncode == 0


def test_duplicate_job_delivery_does_not_start_a_second_reader(stack, video_8s):
    from celery import Celery

    from tasks.config import celery_config
    from tasks.queues import STREAM_JOB_TASK
    from worker.core.settings import load_settings

    pub = stack.publish(video_8s, "dup1")
    rec = stack.wait_state("dup1", {"live"}, 10)
    client = Celery("t")
    client.conf.update(celery_config(load_settings(redis_url=stack.state["redis_url"])))
    # What a redelivery after the visibility timeout would do: the same job again.
    result = client.send_task(STREAM_JOB_TASK, args=["dup1", rec["job_id"]])
    assert result.get(timeout=20)["state"] is None  # refused: another process holds the lease
    client.close()
    assert pub.wait(30) == 0
    rec = stack.wait_state("dup1", {"ended", "failed"}, 30)
    assert rec["state"] == "ended" and rec["segment_count"] == 2


def test_ingest_worker_killed_before_the_first_segment_fails_the_stream(stack, video_20s, video_8s):
    """Before its first segment a stream has no publisher to run the job again: it fails, clearly.
    (After it, the stream resumes: tests/integration/test_worker_kill.py.)"""
    name = stack.state["worker_names"]["ingest"]
    pub = stack.publish(video_20s, "kill1")
    try:
        stack.wait_state("kill1", {"live"}, 10)
        assert stack.stream("kill1")["segment_count"] == 0
        worker = next(p for p in psutil.process_iter(["cmdline"]) if name in " ".join(p.info["cmdline"] or []))
        readers = [c for c in worker.children(recursive=True) if c.name().startswith("ffmpeg")]
        assert readers, "the job's ffmpeg reader runs under the ingest worker"
        killed_at = time.monotonic()
        os.kill(worker.pid, signal.SIGKILL)
        rec = stack.wait_state("kill1", {"failed", "ended"}, 30)
        assert rec["state"] == "failed"
        assert "heartbeat lost" in rec["reason"]
        assert time.monotonic() - killed_at < 30
        assert wait_gone(readers, 5) == []  # PDEATHSIG: the reader died with its worker
    finally:
        pub.kill()
        pub.wait()
    # `livedub up` brings the worker back, and a new stream is dubbed through it from start to end.
    wait_until(lambda: any(name in " ".join(p.info["cmdline"] or []) and p.pid != worker.pid
                           for p in psutil.process_iter(["cmdline"])), 20, 0.2, "the restarted worker")
    again = stack.publish(video_8s, "kill2")
    assert again.wait(30) == 0, again.stderr.read()
    rec = stack.wait_state("kill2", {"ended", "failed"}, 40)
    assert rec["state"] == "ended", rec["reason"]
    assert [s["status"] for s in rec["segments"]] == ["processed", "processed"], rec["segments"]


def test_secrets_are_the_owners_only_and_the_sts_service_does_not_get_the_pipelines(stack):
    run_dir = stack.run_dir
    assert run_dir.stat().st_mode & 0o777 == 0o700
    for name in ("hook_secret", "sts_token", "nginx.conf", "state.json"):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o600, name
    port = stack.state["sts_url"].rsplit(":", 1)[1]
    cmd = {p: " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])}
    sts = next(p for p, c in cmd.items() if "worker.cli sts" in c and f"--port {port}" in c)
    env = sts.environ()
    assert "LIVEDUB_HOOK_SECRET" not in env and "LIVEDUB_REDIS_URL" not in env
    assert env["LIVEDUB_STS_TOKEN"] == stack.sts_token()  # what it needs, it has
