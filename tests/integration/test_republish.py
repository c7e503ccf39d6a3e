"""RTMP drop: the broadcaster's connection dies mid-stream and it re-publishes the same id a few seconds
later. The same job resumes: numbering goes on, nothing already accepted is lost, and the output path
stays published (one recording holds both halves)."""

import os
import signal
import subprocess

import pytest

from tests.support import local_stack
from worker.core.naming import rtmp_url
from worker.devstack.samples import make_video
from worker.media.analyze import analyze_file
from worker.media.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=80), pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with local_stack(tmp_path_factory.mktemp("republish") / "run", "--engine", "echo") as s:
        yield s


def record(stack, sid, out):
    url = rtmp_url(stack.state["rtmp_url"], sid, "out")
    return subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", url, "-c", "copy", str(out)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_drop_and_republish_resumes_the_same_job(stack, media_dir, tmp_path):
    first = make_video(media_dir / "drop_a.flv", 20, speech=True)
    second = make_video(media_dir / "drop_b.flv", 12, speech=True)
    sid = "drop"
    recorder = record(stack, sid, tmp_path / "out.flv")
    broadcaster = stack.publish(first, sid)
    wait_until(lambda: stack.stream(sid)["segment_count"] >= 1, 30, 0.2, "first segment")
    job_id = stack.stream(sid)["job_id"]
    wait_until(lambda: stack.stream(sid)["published_count"] >= 1, 30, 0.2, "first piece out")
    os.kill(broadcaster.pid, signal.SIGKILL)  # the connection dies: no RTMP close
    broadcaster.wait(5)
    # nginx sees the socket close: publish-done hook, the reader sees the end, the stream drains.
    dropped = wait_until(lambda: (r := stack.stream(sid))["segments_final"] is not None and r, 15, 0.1,
                         "the first run to record its end")
    assert dropped["state"] == "draining" and dropped["job_id"] == job_id
    before = dropped["segment_count"]

    again = stack.publish(second, sid)
    assert again.wait(60) == 0, again.stderr.read() if again.stderr else ""
    rec = stack.wait_state(sid, {"ended", "failed"}, 90)
    assert recorder.wait(30) == 0, recorder.stderr.read() if recorder.stderr else ""  # one output, ended once

    assert rec["state"] == "ended", rec["reason"]
    assert rec["job_id"] == job_id and rec["generation"] == 1 and rec["resumes"] == 1
    segs = rec["segments"]
    assert [s["sequence"] for s in segs] == list(range(len(segs))) and len(segs) >= before + 2  # numbering goes on
    assert [s["status"] for s in segs] == ["processed"] * len(segs), segs  # none lost, none fallen back
    resumed = [s for s in segs if "part1" in s["file"]]
    assert resumed and resumed[0]["sequence"] == before
    gap = resumed[0]["start_s"] - segs[before - 1]["end_s"]
    assert 0 <= gap < 10, gap  # the resumed part sits after the first on the stream's timeline
    assert sum(s["end_s"] - s["start_s"] for s in resumed) == pytest.approx(12.0, abs=0.1)

    out = analyze_file(tmp_path / "out.flv")
    assert out.video is not None and out.audio is not None, out.summary()
    # One recording holds both halves and the gap between them: the output path stayed published.
    assert out.video.end_s - out.video.start_s == pytest.approx(segs[-1]["end_s"] - segs[0]["start_s"], abs=0.3)
    assert abs(out.av_offset_end_ms or 0) <= 25, out.summary()


def test_a_republish_after_the_grace_starts_a_new_generation(stack, media_dir):
    video = make_video(media_dir / "late_a.flv", 8, speech=True)
    sid = "late"
    assert stack.publish(video, sid).wait(60) == 0
    first = stack.wait_state(sid, {"ended", "failed"}, 60)
    assert first["state"] == "ended" and first["resumes"] == 0
    assert stack.publish(video, sid).wait(60) == 0
    second = wait_until(lambda: (r := stack.stream(sid))["generation"] == 2 and r["state"] in ("ended", "failed")
                        and r, 60, 0.2, "generation 2 to end")
    assert second["job_id"] != first["job_id"] and second["state"] == "ended"
    assert [s["status"] for s in second["segments"]] == ["processed", "processed"]
