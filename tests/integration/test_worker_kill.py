"""SIGKILL a worker of each pool (ingest, sts, collect, remux, publish) mid-stream: the stream goes on,
every segment is accounted for, and no ffmpeg is orphaned. Lease TTL 5 s here, so recovery takes about a segment."""

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import psutil
import pytest
import requests

from tests.support import local_stack, wait_gone
from worker.procs import wait_until
from worker.samples import make_video

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with local_stack(tmp_path_factory.mktemp("kill") / "run", "--engine", "echo",
                     env={"LIVEDUB_HEARTBEAT_TTL_S": "5", "LIVEDUB_HEARTBEAT_INTERVAL_S": "1"}) as s:
        yield s


def worker_proc(stack, pool):
    name = stack.state["worker_names"][pool]
    return next(p for p in psutil.process_iter(["cmdline"]) if name in " ".join(p.info["cmdline"] or [])
                and "celery" in " ".join(p.info["cmdline"] or []))


def start_dub(stack, video, tmp_path, sid):
    return subprocess.Popen([sys.executable, "-m", "worker.cli", "dub", str(video), "-o", str(tmp_path / "o.mp4"),
                             "--state-file", str(stack.run_dir / "state.json"), "--stream-id", sid],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def published(stack, sid):
    return stack.stream(sid)["published_count"]


def out_on_server(stack, sid):
    """Someone publishes live/<id>/out (nginx's stat page lists players of a stream without one too)."""
    root = ET.fromstring(requests.get(stack.state["stat_url"], timeout=5).text)
    return any(s.findtext("name") == f"{sid}/out" and s.find("client/publishing") is not None
               for s in root.iter("stream"))


@pytest.fixture(scope="module")
def video(media_dir):
    return make_video(media_dir / "count30k.flv", 30, speech=True)


@pytest.mark.parametrize("pool", ["sts", "collect", "remux"])
def test_killed_chain_worker(stack, video, tmp_path, pool):
    sid = f"k{pool}"
    dub = start_dub(stack, video, tmp_path, sid)
    wait_until(lambda: published(stack, sid) >= 1, 30, 0.2, "first piece out")
    worker = worker_proc(stack, pool)
    kids = worker.children(recursive=True)
    os.kill(worker.pid, signal.SIGKILL)
    out, err = dub.communicate(timeout=150)
    rec = stack.stream(sid)
    statuses = [s["status"] for s in rec["segments"]]
    assert rec["state"] == "ended" and len(statuses) == 5
    assert all(s in ("processed", "fallback") for s in statuses), rec["segments"]
    assert statuses[-1] == "processed"  # the restarted pool dubs again
    assert wait_gone(kids, 5) == []
    report = json.loads(out)
    assert report["output"]["duration_s"] == pytest.approx(30.0, abs=0.1), report
    assert report["segments"]["failed"] == 0


def test_killed_publish_worker(stack, video, tmp_path):
    dub = start_dub(stack, video, tmp_path, "kpub")
    wait_until(lambda: published(stack, "kpub") >= 1 and out_on_server(stack, "kpub"), 30, 0.2, "output up")
    worker = worker_proc(stack, "publish")
    ffmpegs = [p for p in worker.children(recursive=True) if p.name() == "ffmpeg"]
    assert ffmpegs
    os.kill(worker.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    assert wait_gone(ffmpegs, 5) == []  # the publisher's ffmpeg died with its worker
    wait_until(lambda: not out_on_server(stack, "kpub"), 10, 0.2, "output gone")
    # The ingest job notices the publisher's lease expired and starts it again; the output comes back.
    wait_until(lambda: out_on_server(stack, "kpub"), 30, 0.2, "output path published again")
    resumed_after = time.monotonic() - killed_at
    dub.communicate(timeout=150)
    rec = stack.wait_state("kpub", {"ended", "failed"}, 60)
    assert rec["state"] == "ended", rec["reason"]
    assert [s["status"] for s in rec["segments"]] and all(
        s["status"] in ("processed", "fallback") for s in rec["segments"]), rec["segments"]
    assert resumed_after < 25


def test_killed_ingest_worker_resumes_the_stream(stack, media_dir, tmp_path):
    video = make_video(media_dir / "count40k.flv", 40, speech=True)
    dub = start_dub(stack, video, tmp_path, "king")
    wait_until(lambda: stack.stream("king")["segment_count"] >= 1, 30, 0.2, "first segment")
    worker = worker_proc(stack, "ingest")
    readers = [p for p in worker.children(recursive=True) if p.name() == "ffmpeg"]
    before = stack.stream("king")["segment_count"]
    os.kill(worker.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    assert wait_gone(readers, 5) == []
    # The publisher sees the ingest lease expire and runs the job again; a new reader goes on.
    wait_until(lambda: any("part1" in s["file"] for s in stack.stream("king")["segments"]), 30, 0.2,
               "a segment from the resumed reader")
    resumed_after = time.monotonic() - killed_at
    dub.communicate(timeout=150)
    rec = stack.wait_state("king", {"ended", "failed"}, 60)
    assert rec["state"] == "ended", rec["reason"]
    seqs = [s["sequence"] for s in rec["segments"]]
    assert seqs == list(range(len(seqs))) and len(seqs) > before  # the numbering goes on
    assert all(s["status"] in ("processed", "fallback", "failed") for s in rec["segments"])
    resumed = [s for s in rec["segments"] if "part1" in s["file"]]
    assert resumed and all(s["status"] == "processed" for s in resumed), resumed
    starts = [s["start_s"] for s in rec["segments"] if s["status"] != "failed"]
    assert starts == sorted(starts)  # the resumed part sits after the first on the stream's timeline
    assert resumed_after < 20, resumed_after
