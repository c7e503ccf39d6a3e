"""The per-stream job: one ffmpeg reader cuts the live input into segments at keyframes.

It runs without Celery: the task in ``tasks/stream.py`` only builds it and calls :meth:`run`.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from worker import metrics
from worker.media import PROGRESS, SEGMENT_LIST, parse_segment_list, progress_out_time_s, segmenter_args
from worker.models import Segment, StreamState
from worker.naming import rtmp_url
from worker.prepare import NoVideo
from worker.procs import ProcessRunner, stop_process
from worker.registry import StreamRegistry
from worker.settings import Settings
from worker.store import LocalSegmentStore

log = logging.getLogger(__name__)
POLL_S = 0.2


@dataclass(frozen=True)
class JobOutcome:
    state: StreamState | None  # None: the job was superseded or a duplicate and wrote nothing
    reason: str
    segments: int


class StreamJob:
    def __init__(
        self,
        stream_id: str,
        job_id: str,
        *,
        registry: StreamRegistry,
        store: LocalSegmentStore,
        settings: Settings,
        runner: ProcessRunner | None = None,
        make_preparer: Callable[[Path, Callable[[], bool]], Callable[[Segment], None]] | None = None,
        restart_publisher: Callable[[], None] | None = None,
        shutdown: threading.Event | None = None,
        resume: int = 0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.stream_id = stream_id
        self.job_id = job_id
        self.registry = registry
        self.store = store
        self.settings = settings
        self.runner = runner or ProcessRunner()
        self.make_preparer = make_preparer
        self.restart_publisher = restart_publisher
        self.on_segment: Callable[[Segment], None] | None = None
        self.fatal = ""
        self.lost = False
        self.first_seq = 0
        self.resume = resume  # > 0: this run was started by the n-th re-publish of the stream
        self.epoch = 0  # resumes when this run began: a later re-publish takes the stream over
        self.shutdown = shutdown or threading.Event()
        self.monotonic = monotonic
        self.sleep = sleep
        self.seen = 0
        self.live = False
        # The lease names this process's run of the job, so a redelivered copy of the same job
        # (same job id, another worker) is told apart and refused.
        self.holder = f"{job_id}.{uuid.uuid4().hex[:8]}"

    def run(self) -> JobOutcome:
        rec = self.registry.get(self.stream_id)
        if rec is None or rec.job_id != self.job_id or not rec.state.active:
            return JobOutcome(None, "superseded: the stream has another job or is over", 0)
        if not self._take_lease():
            return JobOutcome(None, "duplicate: another process runs this job", 0)
        rec = self.registry.get(self.stream_id)  # again: the run it waited for added segments
        if rec is None or rec.job_id != self.job_id or not rec.state.active or not self._claim_epoch():
            self.registry.release(self.stream_id, self.holder)
            return JobOutcome(None, "superseded: another run took this re-publish", 0)
        self.store.sweep()  # drop the files of streams whose TTL ran out
        out_dir = self.store.job_dir(self.stream_id, self.job_id)
        part = int(self.registry.r.hincrby(self.registry.key(self.stream_id), "ingest_part", 1)) - 1
        if part:  # the job runs again (its worker died, or the input was re-published): go on
            out_dir = out_dir / f"part{part}"
            out_dir.mkdir(exist_ok=True)
            self.first_seq = rec.segment_count
            self.live = rec.state is StreamState.LIVE
            self._fail_unprepared(rec.segments)
        url = rtmp_url(self.settings.rtmp_url, self.stream_id, "in")
        seconds = rec.segment_seconds or self.settings.segment_seconds
        args = segmenter_args(url, out_dir, seconds, self.settings.read_timeout_s, self.settings.ffmpeg_bin,
                              audio_track=self.make_preparer is not None, start_number=self.first_seq)
        self.registry.set_fields(self.stream_id, heartbeat_at=self.registry.clock(), input_url=url,
                                 segment_seconds=seconds)
        with open(out_dir / "ffmpeg.log", "wb") as errlog:
            proc = self.runner.start(args, stderr=errlog)
            if self.make_preparer is not None:
                self.on_segment = self.make_preparer(out_dir, lambda: proc.poll() is None)
            try:
                why_stopped = self._watch(proc, out_dir)
            finally:
                stop_process(proc, signal.SIGTERM, grace_s=3)
        if not self.fatal and not self.lost:
            self._collect(out_dir)
        outcome = self._outcome(self.fatal or why_stopped, proc.returncode, out_dir)
        self._record_outcome(outcome)
        self.registry.release(self.stream_id, self.holder)
        return outcome

    def _record_outcome(self, outcome: JobOutcome) -> None:
        if outcome.state is None:
            return
        if self.lost:
            self.registry.record_lost(self.stream_id, self.job_id, outcome.reason)
            return
        self.store.expire(self.stream_id, self.job_id, self.settings.store_ttl_s)
        total = self.first_seq + self.seen
        pieces = bool(total) and self.on_segment is not None
        # With pieces to put out, the publisher ends the stream after the last one.
        state = StreamState.DRAINING if pieces and outcome.state is StreamState.ENDED else outcome.state
        if not self.registry.end_input(self.stream_id, self.job_id, self.epoch, total if pieces else None,
                                       outcome.reason, state):
            log.info("%s: the input came back (re-published) or the stream moved on; run done", self.stream_id)

    def _take_lease(self) -> bool:
        """A previous generation may still be draining, or (re-publish) this job's previous run may
        still be reading the end of its input: wait for its lease, bounded."""
        deadline = self.monotonic() + self.settings.drain_timeout_s
        while not self.registry.lease(self.stream_id, self.holder, self.settings.heartbeat_ttl_s):
            owner = self.registry.lease_owner(self.stream_id) or ""
            if (owner.split(".")[0] == self.job_id and not self.resume) or self.monotonic() > deadline:
                return False
            self.sleep(POLL_S)
        return True

    def _claim_epoch(self) -> bool:
        """Under the lease: note which re-publish this run serves. A run for re-publish n that finds
        a later one, or one already served, stands down."""
        key = self.registry.key(self.stream_id)
        self.epoch = self.registry.resumes(self.stream_id)
        served = int(self.registry.r.hget(key, "served_epoch") or -1)
        if self.resume and (self.resume != self.epoch or served >= self.epoch):
            return False
        self.registry.set_fields(self.stream_id, served_epoch=self.epoch)
        return True

    def _watch(self, proc: subprocess.Popen[bytes], out_dir: Path) -> str:
        """Poll until ffmpeg exits. Returns why the job stopped it ('' when the input ended)."""
        next_beat = 0.0
        draining_since: float | None = None
        interrupted = ""
        redis_down_since: float | None = None
        while proc.poll() is None:
            now = self.monotonic()
            try:
                fields = self.registry.r.hmget(self.registry.key(self.stream_id), "job_id", "state", "stop_requested")
                redis_down_since = None
            except redis.RedisError:
                # Redis restarting: keep reading the input, bounded; Celery and redis-py reconnect.
                redis_down_since = redis_down_since or now
                if now - redis_down_since > 3 * self.settings.heartbeat_ttl_s:
                    return f"registry unreachable for {now - redis_down_since:.0f}s"
                self.sleep(POLL_S)
                continue
            job_id, state, stop = (f.decode() if isinstance(f, bytes) else "" for f in fields)
            if not job_id and not state:
                self.lost = True
                return "the registry lost this stream (Redis restarted without persistence)"
            if job_id != self.job_id:
                return "superseded"
            if now >= next_beat:
                if not self.registry.lease(self.stream_id, self.holder, self.settings.heartbeat_ttl_s):
                    return "superseded"
                self.registry.set_fields(self.stream_id, heartbeat_at=self.registry.clock())
                next_beat = now + self.settings.heartbeat_interval_s
                self._watch_publisher()
            self._collect(out_dir)
            if self.fatal:
                return self.fatal
            if self.shutdown.is_set():
                return "worker shut down while the stream was live"
            if stop == "1" and not interrupted:
                interrupted = "stopped by operator"
                proc.send_signal(signal.SIGINT)  # ffmpeg closes the current segment cleanly
            if state == StreamState.DRAINING.value:
                draining_since = draining_since if draining_since is not None else now
                if now - draining_since > self.settings.drain_timeout_s:
                    return interrupted or "input did not end within the drain timeout after the stop hook"
            self.sleep(POLL_S)
        return interrupted

    def _fail_unprepared(self, segments: list[Segment]) -> None:
        """Segments the dead worker registered but never finished preparing can't be published."""
        for seg in segments:
            if seg.fallback_piece is None and seg.status not in ("processed", "fallback", "failed"):
                self.registry.update_segment(self.stream_id, seg.sequence, status="failed",
                                             reason="lost with its ingest worker before it was prepared")
                metrics.count(self.registry.r, "livedub_segments_total", status="failed")

    def _watch_publisher(self) -> None:
        """The publisher runs on another pool: if its worker died, start it again (it goes on from the
        first segment not yet out). Its lease tells whether it is alive."""
        if self.restart_publisher is None or self.first_seq + self.seen == 0:
            return
        beat = self.registry.r.hget(self.registry.key(self.stream_id), "publisher_heartbeat_at")
        stale_since = float(beat) if beat else None
        if self.registry.lease_owner(self.stream_id, "publisher") is None and stale_since is not None \
                and self.registry.clock() - stale_since > self.settings.heartbeat_ttl_s:
            log.warning("%s: the publisher stopped heartbeating; starting it again", self.stream_id)
            self.registry.set_fields(self.stream_id, publisher_heartbeat_at=self.registry.clock())
            self.restart_publisher()

    def _collect(self, out_dir: Path) -> None:
        if not self.live and _media_arrived(out_dir):
            self.live = self.registry.mark_live(self.stream_id, self.job_id)
        try:
            text = (out_dir / SEGMENT_LIST).read_text()
        except FileNotFoundError:
            return
        for entry in parse_segment_list(text)[self.seen :]:
            seg = Segment(
                sequence=entry.sequence,
                start_s=entry.start_s,
                end_s=entry.end_s,
                file=self.store.key_of(out_dir / entry.file),
            )
            self.registry.add_segment(self.stream_id, seg, (out_dir / entry.file).stat().st_size)
            self.seen += 1
            if self.on_segment is not None:
                self._prepare(seg)

    def _prepare(self, seg: Segment) -> None:
        assert self.on_segment is not None
        try:
            self.on_segment(seg)
        except NoVideo as exc:
            self.fatal = str(exc)
            self.registry.update_segment(self.stream_id, seg.sequence, status="failed", reason=str(exc))
            metrics.count(self.registry.r, "livedub_segments_total", status="failed")
        except Exception as exc:  # noqa: BLE001 - one segment fails, counted; the stream goes on
            log.exception("%s: segment %d could not be prepared", self.stream_id, seg.sequence)
            self.registry.update_segment(self.stream_id, seg.sequence, status="failed",
                                         reason=f"prepare failed: {exc}")
            metrics.count(self.registry.r, "livedub_segments_total", status="failed")

    def _outcome(self, why: str, returncode: int | None, out_dir: Path) -> JobOutcome:
        if why == "superseded":
            return JobOutcome(None, "superseded by a newer job for this stream", self.seen)
        if why and why != "stopped by operator":
            return JobOutcome(StreamState.FAILED, why, self.seen)
        if self.first_seq + self.seen == 0:
            tail = _tail(out_dir / "ffmpeg.log")
            if "0:a" in tail and "matches no streams" in tail:
                return JobOutcome(StreamState.FAILED, "input has no audio track: there is no speech to dub", 0)
            reason = why or f"no media received from the input (ffmpeg exit {returncode}: {tail})"
            state = StreamState.ENDED if why else StreamState.FAILED
            return JobOutcome(state, reason, 0)
        if why:
            return JobOutcome(StreamState.ENDED, why, self.seen)
        if returncode not in (0, None, 255):
            return JobOutcome(
                StreamState.ENDED, f"input ended with a read error: {_tail(out_dir / 'ffmpeg.log')}", self.seen
            )
        return JobOutcome(StreamState.ENDED, "input ended", self.seen)


def _media_arrived(out_dir: Path) -> bool:
    try:
        with open(out_dir / PROGRESS, "rb") as f:
            f.seek(0, 2)
            f.seek(max(f.tell() - 600, 0))
            return progress_out_time_s(f.read().decode(errors="replace")) > 0
    except FileNotFoundError:
        return False


def _tail(path: Path, n: int = 300) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "no log"
    return text[-n:].replace("\n", " | ") or "no output"
