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
from pathlib import Path

import redis

from worker.core.models import StreamState
from worker.core.naming import rtmp_url, with_key
from worker.core.segments import Segment
from worker.core.settings import Settings
from worker.core.units import Segmentation, segmentation_of
from worker.media.commands import AUDIO_TRACK, segmenter_args
from worker.media.procs import ProcessRunner, stop_process
from worker.pipeline.handover_steps import POLL_S, HandoverSteps
from worker.pipeline.ingest_outcome import JobOutcome, Stop, StopCause, job_outcome
from worker.pipeline.reader_steps import SegmentListTail, log_tail, progress_s
from worker.pipeline.supervisor import PUBLISHER, LeaseWatcher
from worker.pipeline.takeover import ABANDONED, Handover, Successor
from worker.state.registry import StreamRegistry
from worker.state.store import SegmentStore

log = logging.getLogger(__name__)
CUT_TOL_S = 0.0015
SWEEP_INTERVAL_S = 60.0  # cut times are keyframe times in ms, printed in µs

__all__ = ["JobOutcome", "StreamJob"]


class StreamJob(HandoverSteps):
    def __init__(
        self,
        stream_id: str,
        job_id: str,
        *,
        registry: StreamRegistry,
        store: SegmentStore,
        settings: Settings,
        runner: ProcessRunner | None = None,
        make_preparer: Callable[[Path, Callable[[], bool], float | None], Callable[[Segment], None]] | None = None,
        restart_publisher: Callable[[], None] | None = None,
        hand_over: Callable[[int], None] | None = None,
        shutdown: threading.Event | None = None,
        resume: int = 0,
        takeover: int = 0,
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
        self.publisher_watch = LeaseWatcher(registry, stream_id, PUBLISHER, settings.heartbeat_ttl_s,
                                            restart_publisher, registry.clock) if restart_publisher else None
        self.hand_over = hand_over  # queue this job again (n-th handover), for another worker of the pool
        self.on_segment: Callable[[Segment], None] | None = None
        self.fatal: Stop | None = None
        self.first_seq = 0
        self.resume = resume  # > 0: this run was started by the n-th re-publish of the stream
        self.takeover = takeover  # > 0: this run was queued by the n-th handover (a worker shutting down)
        self.handover: Handover | None = None  # this run hands its reader over (its worker shuts down)
        self.successor: Successor | None = None  # this run takes a reader over (make before break)
        self.base_s: float | None = None  # this reader's clock: server timestamps less base_s
        self.listed = 0  # entries of the reader's segment list dealt with (registered or skipped)
        self.segment_list = SegmentListTail()
        self.skip_before: float | None = None  # a successor skips what the old reader registered
        self.last_end: float | None = None  # this reader's last registered segment's end (its clock)
        self.open_since: float | None = None  # where the segment being written began (its clock)
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
        first = self.registry.get(self.stream_id, with_segments=False)
        if first is None or not self._ours(first):
            return JobOutcome(None, "superseded: the stream has another job or is over", 0)
        seconds = first.segment_seconds or self.settings.segment_seconds
        if self.takeover and self.shutdown.is_set() and self.hand_over is not None:
            self.hand_over(self.takeover)  # taken by a worker on its way out (this one): pass it on
            return JobOutcome(None, "passed on: this worker shuts down too", 0)
        if (self.takeover and first.reader_base_s is not None and first.takeover_from_s is not None
                and self.registry.claim(self.stream_id, "takeover_by", self.holder)):
            self.successor = Successor(self.registry, self.stream_id, first, seconds)  # reads first, lease later
        elif self.takeover and first.takeover_by not in (None, ABANDONED):
            return JobOutcome(None, "superseded: another worker took the stream over", 0)
        elif not self._take_lease():
            return JobOutcome(None, "duplicate: another process runs this job", 0)
        else:
            rec = self.registry.get(self.stream_id)  # again: the run it waited for added segments
            if rec is None or not self._ours(rec) or not self._claim_epoch(rec):
                self.registry.release(self.stream_id, self.holder)
                return JobOutcome(None, "superseded: another run took this re-publish", 0)
            first = rec
        self.store.sweep()  # drop the files of streams whose TTL ran out
        out_dir = self.store.work_dir(self.stream_id, self.job_id)
        part = (self.registry.incr(self.stream_id, "ingest_part") or 1) - 1
        if not part:
            self._check_total_disk(self.settings.store_dir)
        if self.fatal is not None:
            outcome = JobOutcome(StreamState.FAILED, self.fatal.reason, 0)  # a new stream on a full host
            self._record_outcome(outcome, lost=False)
            self.registry.release(self.stream_id, self.holder)
            return outcome
        if part:  # the job runs again (handover, its worker died, the input was re-published): go on
            out_dir = out_dir / f"part{part}"
            out_dir.mkdir(exist_ok=True)
            if self.successor is None:
                self._go_on(first)
        url = rtmp_url(self.settings.rtmp_url, self.stream_id, "in")
        keyed = with_key(url, self.settings.internal_key_value())  # only livedub may read the input
        mode = segmentation_of(first.segmentation, self.settings.segmentation)
        speech = mode is Segmentation.SPEECH
        cut_s = min(seconds, self.settings.piece_seconds) if speech else seconds  # speech: a piece per keyframe
        args = segmenter_args(keyed, out_dir, cut_s, self.settings.read_timeout_s, self.settings.ffmpeg_bin,
                              audio_track=self.make_preparer is not None, start_number=self.first_seq,
                              clock_base_s=self.successor.base_s if self.successor else None)
        if self.successor is None:
            self.registry.clear_fields(self.stream_id, "reader_base_s", "reader_offset_s")
            self.registry.set_fields(self.stream_id, heartbeat_at=self.registry.clock(), input_url=url,
                                     segment_seconds=seconds, handover_at="", segmentation=mode.value,
                                     **({"latency_s": first.latency_s or self.settings.latency_s} if speech else {}))
        with open(out_dir / "ffmpeg.log", "wb") as errlog:
            proc = self.runner.start(args, stderr=errlog)
            try:
                if self.successor is not None and (early := self._await_seam(proc, out_dir, seconds)):
                    return early
                if self.make_preparer is not None:
                    self.on_segment = self.make_preparer(out_dir, lambda: proc.poll() is None,
                                                         self.successor.offset_s if self.successor else None)
                stop = self._watch(proc, out_dir)
            finally:
                stop_process(proc, signal.SIGTERM, grace_s=3)
        if self.fatal is None and stop.cause not in (StopCause.LOST, StopCause.HANDED_OVER):
            self._scan(out_dir)  # the reader closed its last segment cleanly: it is registered and prepared
        if (finish := getattr(self.on_segment, "finish", None)) is not None:
            finish(lambda: self._ours(self.registry.get(self.stream_id, with_segments=False)))
        stop = self.fatal or stop
        self.store.discard(out_dir / AUDIO_TRACK)  # an object store holds what the other hosts need
        if stop.cause is StopCause.HANDED_OVER or (stop.cause is StopCause.SHUTDOWN and self.hand_over is not None):
            return self._hand_over(stop)
        outcome = job_outcome(stop, proc.returncode, self.first_seq + self.seen, self.seen,
                              log_tail(out_dir / "ffmpeg.log"))
        self._record_outcome(outcome, lost=stop.cause is StopCause.LOST)
        self.registry.release(self.stream_id, self.holder)
        return outcome

    def _record_outcome(self, outcome: JobOutcome, lost: bool) -> None:
        if outcome.state is None:
            return
        if lost:
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

    def _watch(self, proc: subprocess.Popen[bytes], out_dir: Path) -> Stop:
        """Poll until ffmpeg exits: heartbeat, segments, stop requests and the publisher's health."""
        next_beat = next_sweep = 0.0
        draining_since: float | None = None
        interrupted = False
        redis_down_since: float | None = None
        while proc.poll() is None:
            now = self.monotonic()
            try:
                rec = self.registry.get(self.stream_id, with_segments=False)
                redis_down_since = None
            except redis.RedisError:
                # Redis restarting: keep reading the input, bounded; Celery and redis-py reconnect.
                redis_down_since = redis_down_since or now
                if now - redis_down_since > 3 * self.settings.heartbeat_ttl_s:
                    return Stop(StopCause.REGISTRY_UNREACHABLE,
                                f"registry unreachable for {now - redis_down_since:.0f}s")
                self.sleep(POLL_S)
                continue
            if rec is None:
                return Stop(StopCause.LOST)
            if rec.job_id != self.job_id:
                return Stop(StopCause.SUPERSEDED)
            if now >= next_beat:
                if not self.registry.lease(self.stream_id, self.holder, self.settings.heartbeat_ttl_s):
                    return Stop(StopCause.SUPERSEDED)
                self.registry.set_fields(self.stream_id, heartbeat_at=self.registry.clock())
                next_beat = now + self.settings.heartbeat_interval_s
                self._check_disk(out_dir)
                if now >= next_sweep:  # the job's own files expire a TTL after its last beat; others' are swept
                    self.store.expire(self.stream_id, self.job_id, self.settings.store_ttl_s)
                    self.store.sweep()
                    next_sweep = now + SWEEP_INTERVAL_S
                if self.publisher_watch is not None and self.first_seq + self.seen:
                    self.publisher_watch.check(rec.publisher_heartbeat_at)
            if self.base_s is None:
                self._read_base(out_dir)
            shutting_down = self.shutdown.is_set()  # once per round: it may come while a segment is prepared
            handover = self._begin_handover(out_dir) if shutting_down and self.hand_over is not None \
                and self.handover is None else self.handover
            if handover is not None:
                handover.refresh(rec)
                if self.last_end is not None:  # the new reader may have reached the last cut just now
                    handover.meet(self.last_end, self.first_seq + self.seen)
            self._scan(out_dir)
            self._check_keyframes(out_dir, rec.segment_seconds or self.settings.segment_seconds)
            if self.fatal is not None:
                return self.fatal
            if handover is not None and handover.overdue() and self.last_end is not None:
                handover.set_seam(self.last_end, self.first_seq + self.seen)  # no common cut came: stop here
            if handover is not None and handover.seam is not None:
                if (hand_over_at := getattr(self.on_segment, "hand_over_at", None)) is not None:
                    hand_over_at(handover.seam)  # speech mode: the successor hears from the seam
                return Stop(StopCause.HANDED_OVER)
            if shutting_down and (handover is None or handover.abandoned):
                return Stop(StopCause.SHUTDOWN)
            if rec.stop_requested and not interrupted:
                interrupted = True
                proc.send_signal(signal.SIGINT)  # ffmpeg closes the current segment cleanly
            if rec.state is StreamState.DRAINING:
                draining_since = draining_since if draining_since is not None else now
                if now - draining_since > self.settings.drain_timeout_s:
                    return Stop(StopCause.STOPPED_BY_OPERATOR if interrupted else StopCause.DRAIN_TIMEOUT)
            self.sleep(POLL_S)
        return Stop(StopCause.STOPPED_BY_OPERATOR if interrupted else StopCause.INPUT_ENDED)

    def _scan(self, out_dir: Path) -> None:
        """Register the segments the reader completed since the last scan, and prepare each. Handing
        over, it stops at the seam; taking over, it skips what the old reader registered."""
        if not self.live and progress_s(out_dir) > 0:
            self.live = self.registry.mark_live(self.stream_id, self.job_id)
        for entry in self._entries(out_dir)[self.listed :]:
            if self.handover is not None and (self.handover.seam is not None
                                              or self.handover.meet(entry.start_s, self.first_seq + self.seen)):
                return  # the successor's reader has this segment
            self.listed += 1
            self.open_since = entry.end_s
            if self.skip_before is not None and entry.start_s < self.skip_before - CUT_TOL_S:
                continue
            seg = Segment(sequence=self.first_seq + self.seen, start_s=entry.start_s, end_s=entry.end_s,
                          file=self.store.key_of(out_dir / entry.file))
            size = (out_dir / entry.file).stat().st_size
            self.registry.add_segment(self.stream_id, seg, size)
            self.seen += 1
            self._check_bitrate(size, entry)
            self.last_end = entry.end_s
            if self.on_segment is not None:
                self._prepare(seg)
            if self.handover is not None and self.handover.meet(entry.end_s, seg.sequence + 1):
                return
