"""The ingest job's decisions, driven with a fake reader process and a fake clock against a real Redis: how a
run resumes a stream (part, numbering, unprepared segments), when it gives up, how it ends."""

import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.support import fresh_pipeline
from worker.core.models import StreamState
from worker.core.segments import ReasonCode, Segment, SegmentStatus
from worker.media.commands import PROGRESS, SEGMENT_LIST
from worker.pipeline.ingest import StreamJob

pytestmark = pytest.mark.integration


class FakeReader:
    """ffmpeg's segmenter: on start it has cut ``segments`` (sequence, start, end) into the job's directory;
    it exits after ``polls`` looks, or when signalled. Its pid is a real process group of its own (a
    sleeping child), so stop_process() signals that and nothing else."""

    def __init__(self, segments: list[tuple[int, float, float]], polls: int = 20, payload: bytes = b"ts",
                 progress_s: float = 2.0) -> None:
        self.segments, self.polls, self.payload, self.progress_s = segments, polls, payload, progress_s
        self.signals: list[int] = []
        self.returncode: int | None = None
        self.args: list[str] = []
        self.group = subprocess.Popen(["sleep", "60"], start_new_session=True)
        self.pid = self.group.pid

    def start(self, args, **_):
        self.args = list(args)
        out_dir = Path(next(a for a in args if a.endswith("seg_%05d.ts"))).parent
        (out_dir / PROGRESS).write_text(f"out_time_us={int(self.progress_s * 1e6)}\nprogress=continue\n")
        lines = ""
        for seq, start, end in self.segments:
            (out_dir / f"seg_{seq:05d}.ts").write_bytes(self.payload)
            lines += f"seg_{seq:05d}.ts,{start},{end}\n"
        (out_dir / SEGMENT_LIST).write_text(lines)
        return self

    def poll(self):
        self.polls -= 1
        if self.returncode is None and self.polls <= 0:
            self.returncode = 0
        return self.returncode

    def wait(self, timeout=None):
        return self.returncode

    def send_signal(self, sig) -> None:
        self.signals.append(sig)
        self.returncode = 255  # ffmpeg closes the current segment and exits

    def close(self) -> None:
        self.group.kill()
        self.group.wait()


@pytest.fixture
def env(tmp_path, redis_url):
    return fresh_pipeline(redis_url, tmp_path)


def make_job(env, reader, **kw):
    reg, store, settings, clock, job = env
    prepared: list[tuple[Path, int]] = []

    def make_preparer(out_dir, reader_alive, offset_s=None):
        return lambda seg: prepared.append((out_dir, seg.sequence))

    sj = StreamJob("s", job, registry=reg, store=store, settings=settings, runner=reader,
                   make_preparer=make_preparer, monotonic=clock, sleep=clock.sleep, **kw)
    return sj, prepared


def test_a_first_run_registers_prepares_and_hands_the_end_to_the_publisher(env):
    reg, store, settings, clock, job = env
    reader = FakeReader([(0, 0.0, 6.0), (1, 6.0, 12.0)])
    try:
        sj, prepared = make_job(env, reader)
        outcome = sj.run()
    finally:
        reader.close()
    assert (outcome.state, outcome.reason, outcome.segments) == (StreamState.ENDED, "input ended", 2)
    assert "-segment_start_number" in reader.args and reader.args[reader.args.index("-segment_start_number") + 1] == "0"
    assert [seq for _, seq in prepared] == [0, 1] and prepared[0][0] == store.work_dir("s", job)
    rec = reg.get("s")
    # live once media arrived; the input's end makes it draining, and the publisher ends it after the last piece
    assert rec.live_at is not None and rec.state is StreamState.DRAINING and rec.segments_final == 2
    assert rec.ingest_part == 1 and reg.lease_owner("s") is None


def test_a_resumed_run_goes_on_in_a_new_part_and_fails_what_the_dead_run_left_unprepared(env):
    reg, store, settings, clock, job = env
    reg.mark_live("s", job)
    reg.incr("s", "ingest_part")  # a run before this one (its worker died)
    for seq in (0, 1):
        reg.add_segment("s", Segment(sequence=seq, start_s=6.0 * seq, end_s=6.0 * seq + 6, file=f"s/{job}/seg{seq}"), 1)
    reg.update_segment("s", 0, fallback_piece="s/j/fallback_00000.ts")  # prepared; segment 1 was not
    reader = FakeReader([(2, 0.0, 6.0), (3, 6.0, 12.0)])
    try:
        sj, prepared = make_job(env, reader)
        outcome = sj.run()
    finally:
        reader.close()
    part = store.work_dir("s", job) / "part1"
    assert reader.args[reader.args.index("-segment_start_number") + 1] == "2"  # the numbering goes on
    assert all(out_dir == part for out_dir, _ in prepared) and [seq for _, seq in prepared] == [2, 3]
    segs = {s.sequence: s for s in reg.segments("s")}
    assert segs[0].status is SegmentStatus.EXTRACTED  # untouched: the publisher puts it out
    assert (segs[1].status, segs[1].reason_code) == (SegmentStatus.FAILED, ReasonCode.LOST_WITH_WORKER)
    assert segs[2].file.startswith(f"s/{job}/part1/")
    assert outcome.state is StreamState.ENDED and reg.get("s").segments_final == 4


def test_a_worker_shutting_down_gives_the_stream_up_with_the_reason(env):
    reg, store, settings, clock, job = env
    shutdown = threading.Event()
    shutdown.set()
    reader = FakeReader([(0, 0.0, 6.0)], polls=1000)
    try:
        sj, _ = make_job(env, reader, shutdown=shutdown)
        outcome = sj.run()
    finally:
        reader.close()
    assert outcome.state is StreamState.FAILED and outcome.reason == "worker shut down while the stream was live"
    assert reg.get("s").state is StreamState.FAILED


def test_a_worker_shutting_down_hands_the_stream_over_instead_of_failing_it(env):
    reg, store, settings, clock, job = env
    shutdown = threading.Event()
    shutdown.set()
    handed: list[int] = []
    reader = FakeReader([(0, 0.0, 6.0), (1, 6.0, 12.0)], polls=1000)
    try:
        sj, prepared = make_job(env, reader, shutdown=shutdown, hand_over=handed.append)
        outcome = sj.run()
    finally:
        reader.close()
    assert outcome.state is None and outcome.reason.startswith("handed over")
    assert handed == [1]  # queued again, for the next worker of the pool
    assert [seq for _, seq in prepared] == [0, 1]  # what the reader had cut is registered and prepared
    rec = reg.get("s")
    assert rec.state is StreamState.LIVE and rec.handovers == 1 and rec.handover_at == clock()
    assert reg.lease_owner("s") is None  # free for the next run
    assert reg.reconcile(settings.start_timeout_s) == []  # a pending handover is not a dead job
    # the next run takes it: a new part, numbering on, the handover done
    nxt = FakeReader([(2, 0.0, 6.0)])
    try:
        sj2, prepared2 = make_job(env, nxt)
        assert sj2.run().state is StreamState.ENDED
    finally:
        nxt.close()
    assert nxt.args[nxt.args.index("-segment_start_number") + 1] == "2"
    assert prepared2[0][0].name == "part1" and reg.get("s").handover_at is None


def test_an_operator_stop_interrupts_the_reader_and_ends_the_stream(env):
    reg, store, settings, clock, job = env
    reg.request_stop("s", job, "stopped by operator")
    reader = FakeReader([(0, 0.0, 6.0)], polls=1000)
    try:
        sj, _ = make_job(env, reader)
        outcome = sj.run()
    finally:
        reader.close()
    assert reader.signals == [signal.SIGINT]  # ffmpeg closes the current segment cleanly
    assert (outcome.state, outcome.reason) == (StreamState.ENDED, "stopped by operator")


def test_a_run_for_a_stream_with_another_job_does_nothing(env):
    reg, store, settings, clock, job = env
    reader = FakeReader([(0, 0.0, 6.0)])
    try:
        sj = StreamJob("s", "otherjob", registry=reg, store=store, settings=settings, runner=reader)
        outcome = sj.run()
    finally:
        reader.close()
    assert outcome.state is None and reader.args == []  # no reader started
    assert reg.get("s").state is StreamState.STARTING


def test_an_input_over_the_bitrate_limit_is_stopped_with_the_reason(tmp_path, redis_url):
    env = fresh_pipeline(redis_url, tmp_path, max_input_kbps=100)
    reader = FakeReader([(0, 0.0, 6.0)], polls=1000, payload=bytes(150_000))  # 200 kbit/s
    try:
        outcome = make_job(env, reader)[0].run()
    finally:
        reader.close()
    assert outcome.state is StreamState.FAILED and "bitrate (200 kbit/s) is over the limit of 100" in outcome.reason
    assert env[0].metrics.snapshot()[0]["livedub_limit_stops_total|limit=bitrate"] == 1


def test_an_input_with_no_keyframe_for_two_segments_is_stopped_with_the_reason(env):
    reg = env[0]
    # one segment closed at 6 s; the reader has written 19 s since: 13 s without a keyframe to cut at
    reader = FakeReader([(0, 0.0, 6.0)], polls=1000, progress_s=19.0)
    try:
        outcome = make_job(env, reader)[0].run()
    finally:
        reader.close()
    assert outcome.state is StreamState.FAILED and "no keyframe for 13s" in outcome.reason
    assert reg.metrics.snapshot()[0]["livedub_limit_stops_total|limit=keyframe"] == 1


def test_a_stream_over_its_disk_quota_is_stopped_with_the_reason(tmp_path, redis_url):
    env = fresh_pipeline(redis_url, tmp_path, max_stream_disk_mb=1, max_input_kbps=0)
    reader = FakeReader([(0, 0.0, 6.0)], polls=1000, payload=bytes(range(256)) * 8192)  # 2 MB on disk
    try:
        outcome = make_job(env, reader)[0].run()
    finally:
        reader.close()
    assert outcome.state is StreamState.FAILED and "disk quota: 2 MB of 1 MB" in outcome.reason, outcome.reason
    assert env[0].metrics.snapshot()[0]["livedub_limit_stops_total|limit=disk"] == 1


def test_a_new_stream_does_not_start_while_the_host_is_over_the_total_quota(tmp_path, redis_url):
    env = fresh_pipeline(redis_url, tmp_path, max_total_disk_mb=1, store_dir=tmp_path / "store")
    other = tmp_path / "store" / "other" / "job1"
    other.mkdir(parents=True)
    (other / "seg_00000.ts").write_bytes(bytes(range(256)) * 8192)  # 2 MB of another stream's
    reader = FakeReader([(0, 0.0, 6.0)])
    try:
        outcome = make_job(env, reader)[0].run()
    finally:
        reader.close()
    assert outcome.state is StreamState.FAILED and "total quota: 2 MB of 1 MB" in outcome.reason
    assert reader.args == []  # no reader was started
    assert env[0].get("s").state is StreamState.FAILED
