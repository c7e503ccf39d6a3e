"""The ordered publisher: one ffmpeg per stream, fed one piece per segment, in sequence, on time.

At each piece's deadline it feeds the dubbed piece if it is ready, else the segment's fallback
piece (original audio, same alignment). The output never waits for a late dub; a late dub is
dropped and counted. The publisher also ends the stream once the last piece is out.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis

from worker import metrics
from worker.analyze import analyze_file
from worker.models import Segment, StreamState
from worker.naming import rtmp_url
from worker.pieces import publisher_args
from worker.pipewriter import PipeWriter
from worker.procs import ProcessRunner, stop_process
from worker.progress import ProgressLog, wall_at
from worker.registry import StreamRegistry
from worker.settings import Settings
from worker.store import LocalSegmentStore
from worker.timing import poll_delay

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Choice:
    key: str
    status: str  # processed | fallback
    reason: str | None


def choose(seg: Segment, now: float) -> Choice | None:
    """What to feed for a segment now, or None to keep waiting. Pure."""
    if seg.dub == "ready" and seg.piece:
        return Choice(seg.piece, "processed", None)
    if seg.fallback_piece is None:
        return None
    if seg.dub == "fallback":
        return Choice(seg.fallback_piece, "fallback", seg.dub_reason or "other")
    if seg.deadline_at is not None and now >= seg.deadline_at:
        return Choice(seg.fallback_piece, "fallback", "late: the dub was not ready at the deadline")
    return None


class Publisher:
    def __init__(self, stream_id: str, job_id: str, *, registry: StreamRegistry, store: LocalSegmentStore,
                 settings: Settings, runner: ProcessRunner | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, restart_ingest: Callable[[int], None] | None = None,
                 max_ingest_restarts: int = 3) -> None:
        self.stream_id, self.job_id = stream_id, job_id
        self.registry, self.store, self.settings = registry, store, settings
        self.runner = runner or ProcessRunner()
        self.clock, self.sleep = clock, sleep
        self.restart_ingest = restart_ingest
        self.max_ingest_restarts = max_ingest_restarts
        self.holder = f"pub-{job_id}.{uuid.uuid4().hex[:8]}"
        self.next_beat = 0.0
        self.writer: PipeWriter | None = None
        self.progress: ProgressLog | None = None
        self.pending: list[tuple[float, float]] = []  # (media start, input wall time) of pieces not yet out
        self.first_start: float | None = None

    def _beat(self) -> bool:
        if self.clock() >= self.next_beat:
            if not self.registry.lease(self.stream_id, self.holder, self.settings.heartbeat_ttl_s, kind="publisher"):
                return False
            self.registry.set_fields(self.stream_id, publisher_heartbeat_at=self.clock())
            self.next_beat = self.clock() + self.settings.heartbeat_interval_s
            self._watch_ingest()
        return True

    def _watch_ingest(self) -> None:
        """The ingest job runs on another pool. If its worker died while the input is still live, run
        it again (a new reader goes on with the numbering); give up after a few tries."""
        key = self.registry.key(self.stream_id)
        final, beat, state = self.registry.r.hmget(key, "segments_final", "heartbeat_at", "state")
        if self.restart_ingest is None or final is not None or _d(state) not in ("live", "draining") or not beat:
            return
        if self.registry.lease_owner(self.stream_id) is not None:
            return
        if self.clock() - float(beat) <= self.settings.heartbeat_ttl_s:
            return
        tries = int(self.registry.r.hincrby(key, "ingest_restarts", 1))
        if tries > self.max_ingest_restarts:
            self.registry.finish(self.stream_id, self.job_id, StreamState.FAILED,
                                 f"heartbeat lost: the ingest job died {tries - 1} times")
            return
        log.warning("%s: the ingest job stopped heartbeating; running it again (%d)", self.stream_id, tries)
        self.registry.set_fields(self.stream_id, heartbeat_at=self.clock())
        self.restart_ingest(tries)

    def _beat_quiet(self) -> None:
        try:
            self._beat()
        except redis.RedisError:
            pass

    def _job_fields(self) -> tuple[str, str, int | None]:
        job_id, state, final = self.registry.r.hmget(self.registry.key(self.stream_id), "job_id", "state",
                                                     "segments_final")
        return (_d(job_id), _d(state), int(_d(final)) if final else None)

    def run(self) -> str:
        if not self.registry.lease(self.stream_id, self.holder, self.settings.heartbeat_ttl_s, kind="publisher"):
            return "duplicate: another publisher runs this stream"
        url = rtmp_url(self.settings.rtmp_url, self.stream_id, "out")
        job_dir = self.store.job_dir(self.stream_id, self.job_id)
        self.registry.set_fields(self.stream_id, output_url=url, publisher_state="publishing")
        with open(job_dir / "publisher.log", "wb") as errlog:
            proc = self.runner.start(publisher_args(self.settings.ffmpeg_bin, url), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=errlog)
            assert proc.stdout is not None
            self.progress = ProgressLog(proc.stdout, self.clock)
            reason = "publisher stopped"
            try:
                reason = self._feed(proc)
            finally:
                if reason.startswith("superseded"):  # a newer job owns the output path: leave it now
                    stop_process(proc, signal.SIGTERM, grace_s=2)
                if self.writer is not None:
                    self.writer.finish(self._beat_quiet)
                if proc.stdin is not None and not proc.stdin.closed:
                    try:
                        proc.stdin.close()
                    except BrokenPipeError:
                        pass
                rec = self.registry.get(self.stream_id)
                delay = rec.output_delay_s if rec and rec.output_delay_s else self.settings.segment_seconds
                try:  # -re: ffmpeg plays out what it holds, then ends
                    proc.wait(timeout=delay * 2 + 10)
                except subprocess.TimeoutExpired:
                    stop_process(proc, signal.SIGTERM, grace_s=3)
                if self.progress is not None:
                    self.progress.thread.join(2)
                self._observe_output()
        self.registry.set_fields(self.stream_id, publisher_state="done", publisher_reason=reason)
        job_id, state, final = self._job_fields()
        if job_id == self.job_id and state != StreamState.FAILED.value:
            rec = self.registry.get(self.stream_id)
            why = rec.reason if rec and rec.reason else "input ended"
            self.registry.finish(self.stream_id, self.job_id, StreamState.ENDED, why)
        self.registry.release(self.stream_id, self.holder, kind="publisher")
        return reason

    def _feed(self, proc: subprocess.Popen[bytes]) -> str:
        """Feed pieces in order; rides out a Redis restart for up to three lease TTLs."""
        down_since: float | None = None
        while True:
            try:
                return self._feed_pieces(proc)
            except redis.RedisError as exc:
                down_since = down_since or self.clock()
                if self.clock() - down_since > 3 * self.settings.heartbeat_ttl_s:
                    return f"registry unreachable: {type(exc).__name__}"
                self.sleep(0.5)

    def _feed_pieces(self, proc: subprocess.Popen[bytes]) -> str:
        # A restarted publisher (its worker died) goes on from the first segment not yet out.
        done = {"processed", "fallback", "failed"}
        segments = self.registry.segments(self.stream_id)
        k = next((s.sequence for s in segments if s.status not in done), len(segments))
        while True:
            if not self._beat():
                return "superseded by another publisher"
            job_id, state, final = self._job_fields()
            if job_id != self.job_id:
                return "superseded by a newer job"
            self._observe_output()
            if final is not None and k >= final:
                if self._may_end(state):
                    return "all pieces published"
                self.sleep(0.1)  # the input may be re-published: then the stream goes on
                continue
            seg = self.registry.segment(self.stream_id, k)
            if seg is not None and seg.status == "failed":  # lost before it was prepared: nothing to feed
                k += 1
                continue
            if seg is None or seg.deadline_at is None:
                if state in (StreamState.ENDED.value, StreamState.FAILED.value) and final is None:
                    self._fail_rest(k, "the stream ended before this segment was prepared")
                    return f"stream {state} before segment {k}"
                self.sleep(poll_delay(self.clock(), None))
                continue
            choice = choose(seg, self.clock())
            if choice is None:
                if seg.fallback_piece is None and seg.deadline_at is not None and self.clock() > seg.deadline_at:
                    metrics.count(self.registry.r, "livedub_publisher_stalls_total")
                    self.sleep(0.2)  # counted once per 0.2 s of stall
                else:
                    self.sleep(poll_delay(self.clock(), seg.deadline_at))
                continue
            decided_at = self.clock()
            try:
                self._write(proc, choice)
            except (BrokenPipeError, OSError) as exc:
                self._fail_rest(k, f"publisher ffmpeg stopped: {exc}")
                return f"publisher ffmpeg stopped at segment {k}"
            self._account(seg, choice, decided_at)
            k += 1

    def _may_end(self, state: str) -> bool:
        """After the last piece: a stream whose input dropped (not stopped by the operator) waits up
        to ``republish_grace_s`` from the input's end for a re-publish, keeping the output up. Then it
        seals the stream; False when the input came back meanwhile."""
        ended_at, stop = self.registry.r.hmget(self.registry.key(self.stream_id), "ended_input_at", "stop_requested")
        if state == StreamState.DRAINING.value and _d(stop) != "1" and ended_at is not None \
                and self.clock() < float(ended_at) + self.settings.republish_grace_s:
            return False
        return self.registry.seal(self.stream_id, self.job_id)

    def _write(self, proc: subprocess.Popen[bytes], choice: Choice) -> None:
        """Hand the piece to the writer thread. ffmpeg -re drains the pipe in real time, so a write
        blocks for most of a piece; the loop meanwhile keeps its heartbeat and watches deadlines."""
        if self.writer is None:
            self.writer = PipeWriter(proc)
        if self.writer.error is not None or proc.poll() is not None:
            raise BrokenPipeError(str(self.writer.error or f"ffmpeg exited {proc.returncode}"))
        self.writer.put(self.store.path(choice.key).read_bytes(), self._beat)

    def _observe_output(self) -> None:
        """Glass-to-glass: when the publisher's ffmpeg put out a piece's first frame, minus when that
        frame entered livedub (the stream's origin plus its media time)."""
        if self.progress is None or self.first_start is None:
            return
        while self.pending:
            start_s, entered_at = self.pending[0]
            out_at = wall_at(self.progress.points, start_s - self.first_start)
            if out_at is None:
                return
            self.pending.pop(0)
            metrics.observe(self.registry.r, "livedub_glass_to_glass_seconds", out_at - entered_at)
            self.registry.set_fields(self.stream_id, last_glass_to_glass_s=round(out_at - entered_at, 3))

    def _account(self, seg: Segment, choice: Choice, decided_at: float) -> None:
        now = self.clock()
        origin = self.registry.r.hget(self.registry.key(self.stream_id), "origin_at")
        if self.first_start is None:
            self.first_start = seg.start_s
        if origin is not None:
            self.pending.append((seg.start_s, float(origin) + seg.start_s))
        report = analyze_file(self.store.path(choice.key), self.settings.ffprobe_bin)
        for edge, offset_ms in (("start", report.av_offset_start_ms), ("end", report.av_offset_end_ms)):
            if offset_ms is not None:
                metrics.observe(self.registry.r, "livedub_output_av_offset_seconds", abs(offset_ms) / 1000,
                                edge=edge)
                self.registry.set_fields(self.stream_id, **{f"last_av_offset_{edge}_ms": round(offset_ms, 1)})
        slack = (seg.deadline_at or decided_at) - decided_at
        self.registry.update_segment(self.stream_id, seg.sequence, status=choice.status, reason=choice.reason,
                                     published_at=now, timings_ms=seg.timings_ms | {"publish_slack": slack * 1000})
        rec_count = self.registry.r.hget(self.registry.key(self.stream_id), "published_count")
        self.registry.set_fields(self.stream_id, published_count=int(rec_count or 0) + 1)
        r = self.registry.r
        metrics.count(r, "livedub_segments_total", status=choice.status)
        if choice.status == "processed":
            metrics.count(r, "media_service_worker_segments_processed_total", type="audio")
        else:
            metrics.count(r, "livedub_fallbacks_total", reason=metrics.reason_code(choice.reason or ""))
            if (choice.reason or "").startswith("late"):
                metrics.count(r, "livedub_late_pieces_total")

    def _fail_rest(self, k: int, reason: str) -> None:
        for seg in self.registry.segments(self.stream_id):
            if seg.sequence >= k and seg.status not in ("processed", "fallback", "failed"):
                self.registry.update_segment(self.stream_id, seg.sequence, status="failed", reason=reason)
                metrics.count(self.registry.r, "livedub_segments_total", status="failed")


def _d(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else ("" if v is None else str(v))

