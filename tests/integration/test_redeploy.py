"""A redeploy with two workers per long-running pool: SIGTERM (what `docker compose up -d` and a rollout
send) to the worker reading a stream, and later to the one publishing it. The other worker of each pool
goes on: the stream ends `ended`, no segment fails, the output is one stream in sync. The reader is
taken over make-before-break (no gap, no duplicate); the publisher hands over at a piece boundary (at
most 2 s of output lost)."""

import json
import signal
import subprocess
import sys

import psutil
import pytest

from tests.support import local_stack, wait_gone
from worker.devstack.samples import make_video
from worker.media.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=110), pytest.mark.timeout(300)]


def worker_running(stack, marker: str) -> psutil.Process | None:
    """The Celery worker of this stack whose ffmpeg child has ``marker`` in its command line."""
    tag = f"-{stack.state['worker_names']['ingest'].split('@')[0].split('-')[-1]}@"
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "celery" in cmd and tag in cmd:
            for c in p.children(recursive=True):
                try:
                    if c.name().startswith("ffmpeg") and marker in " ".join(c.cmdline()):
                        return p
                except psutil.NoSuchProcess:
                    continue
    return None


@pytest.mark.parametrize("segmentation", ["fixed", "speech"])
def test_sigterm_to_the_reading_then_the_publishing_worker_loses_nothing_but_the_reader_gap(
        tmp_path, media_dir, segmentation):
    video = make_video(media_dir / "count30r.flv", 30, speech=True)
    with local_stack(tmp_path / "run", "--engine", "echo", "--scale", "ingest=2", "--scale", "publish=2",
                     env={"LIVEDUB_SEGMENTATION": segmentation}) as stack:
        assert len(stack.state["workers"]) == 7
        dub = subprocess.Popen([sys.executable, "-m", "worker.cli", "dub", str(video), "-o", str(tmp_path / "o.mp4"),
                                "--state-file", str(stack.run_dir / "state.json"), "--stream-id", "redep"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # late enough that the new reader's clock runs a whole segment behind the old one's
        wait_until(lambda: stack.stream("redep")["segment_count"] >= 2, 40, 0.2, "two segments")
        reader = wait_until(lambda: worker_running(stack, "/redep/in"), 10, 0.2, "the reading worker")
        reader.send_signal(signal.SIGTERM)
        assert wait_gone([reader], 25) == []
        wait_until(lambda: any("part1" in s["file"] for s in stack.stream("redep")["segments"]), 30, 0.2,
                   "a segment from the other ingest worker")
        publisher = wait_until(lambda: worker_running(stack, "/redep/out"), 10, 0.2, "the publishing worker")
        assert publisher.pid != reader.pid
        publisher.send_signal(signal.SIGTERM)
        assert wait_gone([publisher], 25) == []  # it played out what it held and left
        out, err = dub.communicate(timeout=150)
        rec = stack.wait_state("redep", {"ended", "failed"}, 60)
    assert rec["state"] == "ended", rec["reason"]
    # a successor taken by the worker on its way out is passed on again: one hop more, no output lost
    assert rec["handovers"] == 1 and rec["publisher_handovers"] >= 1
    assert [s for s in rec["segments"] if s["status"] not in ("processed", "fallback")] == []
    report = json.loads(out)
    assert report["segments"]["failed"] == 0 and not report["output"]["problems"], report
    assert abs(report["output"]["av_offset_start_ms"]) <= 25 and abs(report["output"]["av_offset_end_ms"]) <= 25
    # make before break: the new reader went on from a cut both readers made, so the timeline has no
    # hole and nothing twice (every segment starts where the one before it ended)
    segs = sorted(rec["segments"], key=lambda s: s["sequence"])
    assert [s["sequence"] for s in segs] == list(range(len(segs)))
    seams = [(a["end_s"], b["start_s"]) for a, b in zip(segs, segs[1:], strict=False)]
    assert all(abs(end - start) < 0.002 for end, start in seams), seams
    if segmentation == "speech":
        # the speech the old run heard is not heard again by the new one, and every unit ended
        units = sorted(rec["units"], key=lambda u: u["start_s"])
        assert len(units) >= 10 and all(u["status"] in ("processed", "fallback") for u in units), units
        overlaps = [(a["end_s"], b["start_s"]) for a, b in zip(units, units[1:], strict=False)
                    if b["start_s"] < a["end_s"] - 0.002]
        assert overlaps == [], overlaps
        assert sum(u["status"] == "processed" for u in units) >= len(units) - 1, \
            [(u["start_s"], u["status"], u["reason"]) for u in units]
        # the old run seals the pieces it prepared, the new run its own: none goes out undubbed
        assert [s["sequence"] for s in segs if s["status"] != "processed"] == [], \
            [(s["sequence"], s["status"], s.get("reason")) for s in segs]
    reader_gap = rec["last_gap_s"]
    publisher_loss = 30.0 - reader_gap - report["output"]["duration_s"]
    print(f"reader gap {reader_gap:.3f}s ({round(reader_gap * 25)} frames), "
          f"output lost at the publisher's switch {publisher_loss:.2f}s")
    assert abs(reader_gap) < 0.002, "the reader's handover lost or repeated media"
    assert publisher_loss <= 2.0, (reader_gap, report["output"])
