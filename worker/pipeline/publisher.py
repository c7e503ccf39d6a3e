"""The ordered publisher: one ffmpeg per stream, fed one piece per segment, in sequence, on time.

At each piece's deadline it feeds the dubbed piece if it is ready, else the segment's fallback
piece (original audio, same alignment). The output never waits for a late dub; a late dub is
dropped and counted. The publisher also ends the stream once the last piece is out. What it does at
each step is decided by :func:`worker.pipeline.publishing.decide`.
"""

from __future__ import annotations

import collections
import enum
import logging
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable

import redis

from worker.core.because import Because
from worker.core.models import StreamRecord, StreamState
from worker.core.naming import rtmp_url, with_key
from worker.core.segments import Reason, ReasonCode, Segment, SegmentStatus
from worker.core.settings import Settings
from worker.media.commands import publisher_args
from worker.media.pipewriter import PipeWriter
from worker.media.procs import ProcessRunner, stop_process
from worker.media.progress import ProgressLog
from worker.pipeline.publish_ledger import PublishLedger
from worker.pipeline.publishing import Action, Choice, decide, resume_point
from worker.pipeline.supervisor import INGEST, LeaseWatcher
from worker.state.registry import Lease, StreamRegistry
from worker.state.store import SegmentStore, StoreError
from worker.state.units import UnitBook

log = logging.getLogger(__name__)


class EndCause(enum.Enum):
    ALL_PUBLISHED = "all pieces published"
    SUPERSEDED_PUBLISHER = "superseded by another publisher"
    SUPERSEDED_JOB = "superseded by a newer job"
    STREAM_OVER = "the stream ended before a segment was prepared"
    FFMPEG_STOPPED = "publisher ffmpeg stopped"
    REGISTRY_UNREACHABLE = "registry unreachable"
    HANDED_OVER = "handed over: the worker shut down"


FeedEnd = Because[EndCause]


class Publisher(PublishLedger):
    def __init__(self, stream_id: str, job_id: str, *, registry: StreamRegistry, store: SegmentStore,
                 settings: Settings, runner: ProcessRunner | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, restart_ingest: Callable[[int], None] | None = None,
                 max_ingest_restarts: int = 3, shutdown: threading.Event | None = None,
                 hand_over: Callable[[int], None] | None = None, taking_over: bool = False) -> None:
        self.stream_id, self.job_id = stream_id, job_id
        self.registry, self.store, self.settings = registry, store, settings
        self.runner = runner or ProcessRunner()
        self.clock, self.sleep = clock, sleep
        self.restart_ingest = restart_ingest
        self.max_ingest_restarts = max_ingest_restarts
        # A redeploy: on shutdown, stop at a piece boundary and queue a successor (hand_over); a successor
        # (taking_over) waits for the lease while its predecessor plays out what it holds.
        self.shutdown = shutdown or threading.Event()
        self.hand_over, self.taking_over = hand_over, taking_over
        self.ingest_watch = LeaseWatcher(registry, stream_id, INGEST, settings.heartbeat_ttl_s, self._rerun_ingest,
                                         clock) if restart_ingest else None
        self.holder = f"pub-{job_id}.{uuid.uuid4().hex[:8]}"
        self.next_beat = 0.0
        self.writer: PipeWriter | None = None
        self.progress: ProgressLog | None = None
        self.pending: list[tuple[float, float]] = []  # (media start, input wall time) of pieces not yet out
        self.first_start: float | None = None
        self.retired: collections.deque[tuple[float, list[str], int | None]] = collections.deque()
        self.units, self.unit_cursor = UnitBook(registry), None  # the cursor: from the record, once known

    def _record(self) -> StreamRecord | None:
        return self.registry.get(self.stream_id, with_segments=False)

    def _beat(self) -> bool:
        if self.clock() >= self.next_beat:
            if not self.registry.lease(self.stream_id, self.holder, self.settings.heartbeat_ttl_s, Lease.PUBLISHER):
                return False
            self.registry.set_fields(self.stream_id, publisher_heartbeat_at=self.clock())
            self.next_beat = self.clock() + self.settings.heartbeat_interval_s
            rec = self._record()
            # The ingest job runs on another pool: while the input is live, run it again if it died.
            if self.ingest_watch is not None and rec is not None and not rec.input_ended \
                    and rec.state in (StreamState.LIVE, StreamState.DRAINING):
                if rec.handover_at is None:
                    self.ingest_watch.check(rec.heartbeat_at)
                elif self.clock() - rec.handover_at > self.settings.start_timeout_s:
                    self.registry.finish(self.stream_id, self.job_id, StreamState.FAILED,
                                         f"no ingest worker took the stream over within "
                                         f"{self.settings.start_timeout_s:.0f}s of its worker shutting down")
        return True

    def _rerun_ingest(self) -> None:
        """A new reader goes on with the numbering; give up after a few tries."""
        assert self.restart_ingest is not None
        tries = self.registry.incr(self.stream_id, "ingest_restarts") or 0
        if tries > self.max_ingest_restarts:
            self.registry.finish(self.stream_id, self.job_id, StreamState.FAILED,
                                 f"heartbeat lost: the ingest job died {tries - 1} times")
            return
        self.restart_ingest(tries)

    def _beat_quiet(self) -> None:
        try:
            self._beat()
        except redis.RedisError:
            pass

    def _take_lease(self) -> bool:
        """The publisher lease; a successor waits (bounded) for its predecessor to let it go."""
        deadline = self.clock() + (2 * self.settings.heartbeat_ttl_s if self.taking_over else 0)
        while not self.registry.lease(self.stream_id, self.holder, self.settings.heartbeat_ttl_s, Lease.PUBLISHER):
            if self.clock() >= deadline:
                return False
            self.sleep(0.05)
        return True

    def run(self) -> str:
        if self.shutdown.is_set() and self.hand_over is not None:  # picked up by a worker on its way out
            return self._hand_over().reason
        if not self._take_lease():
            return "duplicate: another publisher runs this stream"
        url = rtmp_url(self.settings.rtmp_url, self.stream_id, "out")
        job_dir = self.store.work_dir(self.stream_id, self.job_id)
        self.registry.set_fields(self.stream_id, output_url=url, publisher_state="publishing")
        with open(job_dir / "publisher.log", "wb") as errlog:
            keyed = with_key(url, self.settings.internal_key_value())  # only livedub may publish the output
            proc = self.runner.start(publisher_args(self.settings.ffmpeg_bin, keyed), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=errlog)
            assert proc.stdout is not None
            self.progress = ProgressLog(proc.stdout, self.clock)
            end = FeedEnd(EndCause.FFMPEG_STOPPED, "publisher stopped")
            try:
                end = self._feed(proc)
            finally:
                self._close(proc, end)
        if end.cause is EndCause.HANDED_OVER:  # the successor goes on from the next piece
            self.registry.release(self.stream_id, self.holder, Lease.PUBLISHER)
            return end.reason
        self.registry.set_fields(self.stream_id, publisher_state="done", publisher_reason=end.reason)
        rec = self._record()
        if rec is not None and rec.job_id == self.job_id and rec.state is not StreamState.FAILED:
            self.registry.finish(self.stream_id, self.job_id, StreamState.ENDED, rec.reason or "input ended")
        self.registry.release(self.stream_id, self.holder, Lease.PUBLISHER)
        return end.reason

    def _close(self, proc: subprocess.Popen[bytes], end: FeedEnd) -> None:
        if end.cause in (EndCause.SUPERSEDED_JOB, EndCause.SUPERSEDED_PUBLISHER):  # leave the output path now
            stop_process(proc, signal.SIGTERM, grace_s=2)
        if self.writer is not None:
            self.writer.finish(self._beat_quiet)
        if proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        rec = self._record()
        delay = rec.output_delay_s if rec and rec.output_delay_s else self.settings.segment_seconds
        limit = time.monotonic() + delay * 2 + 10
        while True:  # -re: ffmpeg plays out what it holds, then ends; the lease stays ours meanwhile
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > limit:
                    stop_process(proc, signal.SIGTERM, grace_s=3)
                    break
                self._beat_quiet()
        if self.progress is not None:
            self.progress.thread.join(2)
        self._observe_output()

    def _feed(self, proc: subprocess.Popen[bytes]) -> FeedEnd:
        """Feed pieces in order; rides out a Redis restart for up to three lease TTLs."""
        down_since: float | None = None
        while True:
            try:
                return self._feed_pieces(proc)
            except redis.RedisError as exc:
                down_since = down_since or self.clock()
                if self.clock() - down_since > 3 * self.settings.heartbeat_ttl_s:
                    return FeedEnd(EndCause.REGISTRY_UNREACHABLE, f"registry unreachable: {type(exc).__name__}")
                self.sleep(0.5)

    def _feed_pieces(self, proc: subprocess.Popen[bytes]) -> FeedEnd:
        # A restarted publisher (its worker died) goes on from the first segment not yet out.
        k = resume_point(self.registry.segments(self.stream_id))
        while True:
            if not self._beat():
                return FeedEnd(EndCause.SUPERSEDED_PUBLISHER)
            if self.shutdown.is_set() and self.hand_over is not None:
                return self._hand_over()
            rec = self._record()
            if rec is None or rec.job_id != self.job_id:
                return FeedEnd(EndCause.SUPERSEDED_JOB)
            self._observe_output()
            final_reached = rec.segments_final is not None and k >= rec.segments_final
            seg = None if final_reached else self.registry.segment(self.stream_id, k)
            d = decide(k, seg, rec, self.clock(), self.settings.republish_grace_s)
            if d.action is Action.END:
                if self.registry.seal(self.stream_id, self.job_id):
                    return FeedEnd(EndCause.ALL_PUBLISHED)
                self.sleep(0.1)  # the input came back (re-published): the stream goes on
            elif d.action is Action.SKIP:
                k += 1
            elif d.action is Action.ABANDON:
                self._fail_rest(k, Reason(ReasonCode.STREAM_ENDED, "the stream ended before this segment was prepared"))
                return FeedEnd(EndCause.STREAM_OVER, f"stream {rec.state.value} before segment {k}")
            elif d.action is Action.FEED and d.choice is not None and seg is not None:
                decided_at = self.clock()
                try:
                    choice = self._write(proc, d.choice, seg)
                except StoreError as exc:  # neither piece can be read: the segment is lost, the stream goes on
                    self._fail(seg, Reason(ReasonCode.STORE_UNAVAILABLE, str(exc)))
                    k += 1
                    continue
                except (BrokenPipeError, OSError) as exc:
                    self._fail_rest(k, Reason(ReasonCode.PUBLISHER_STOPPED, f"publisher ffmpeg stopped: {exc}"))
                    return FeedEnd(EndCause.FFMPEG_STOPPED, f"publisher ffmpeg stopped at segment {k}")
                self._account(seg, choice, decided_at, rec)
                k += 1
            else:
                if d.action is Action.STALL:
                    self.registry.metrics.count("livedub_publisher_stalls_total")
                self.sleep(d.wait_s)

    def _hand_over(self) -> FeedEnd:
        """Queue the successor now; it takes the lease once this publisher's ffmpeg has played out the
        pieces it holds and left the output path (see run/_close), and goes on from the next piece."""
        assert self.hand_over is not None
        n = self.registry.incr(self.stream_id, "publisher_handovers") or 1
        self.hand_over(n)
        self.registry.metrics.count("livedub_publisher_handovers_total")
        log.info("%s: worker shutting down; publisher handed over (%d)", self.stream_id, n)
        return FeedEnd(EndCause.HANDED_OVER)

    def _write(self, proc: subprocess.Popen[bytes], choice: Choice, seg: Segment) -> Choice:
        """Hand the piece to the writer thread. ffmpeg -re drains the pipe in real time, so a write
        blocks for most of a piece; the loop meanwhile keeps its heartbeat and watches deadlines."""
        if self.writer is None:
            self.writer = PipeWriter(proc)
        if self.writer.error is not None or proc.poll() is not None:
            raise BrokenPipeError(str(self.writer.error or f"ffmpeg exited {proc.returncode}"))
        try:
            source = self.store.open(choice.key)
        except (StoreError, FileNotFoundError) as exc:
            if choice.status is not SegmentStatus.PROCESSED or not seg.fallback_piece:
                raise StoreError(str(exc)) from exc
            choice = Choice(seg.fallback_piece, SegmentStatus.FALLBACK,
                            Reason(ReasonCode.STORE_UNAVAILABLE, f"the dubbed piece could not be read: {exc}"))
            try:
                source = self.store.open(choice.key)
            except (StoreError, FileNotFoundError) as exc2:
                raise StoreError(str(exc2)) from exc2
        self.writer.put(source, self._beat)  # streamed into ffmpeg by the writer thread
        return choice

