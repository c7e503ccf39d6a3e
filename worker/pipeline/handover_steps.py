"""The steps of :class:`worker.pipeline.ingest.StreamJob` that decide which run of a stream's job owns
its reader: the lease, the re-publish it serves, handing the reader over when its worker shuts down, and
taking one over at a seam."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

from worker.core.models import StreamRecord, StreamState
from worker.pipeline.ingest_outcome import JobOutcome, Stop
from worker.pipeline.reader_steps import ReaderSteps, progress_s
from worker.pipeline.takeover import Handover, Successor, seam_wait_s

log = logging.getLogger(__name__)
POLL_S = 0.2


class HandoverSteps(ReaderSteps):
    job_id: str
    holder: str
    hand_over: Callable[[int], None] | None
    handover: Handover | None
    successor: Successor | None
    monotonic: Callable[[], float]
    sleep: Callable[[float], None]
    last_end: float | None
    skip_before: float | None
    first_seq: int
    seen: int
    epoch: int
    resume: int
    takeover: int
    live: bool

    def _ours(self, rec: StreamRecord | None) -> bool:
        return rec is not None and rec.job_id == self.job_id and rec.state.active

    def _go_on(self, rec: StreamRecord) -> None:
        """A later run of the job: numbering goes on; what the last run left unprepared is failed."""
        self.first_seq = rec.segment_count
        self.live = rec.state is StreamState.LIVE
        self._fail_unprepared(self.registry.segments(self.stream_id))

    def _hand_over(self, stop: Stop) -> JobOutcome:
        """The worker shuts down (a redeploy): the stream stays live and the job is queued again. With a
        seam, the successor's reader already goes on from it; without one, the next worker of the pool
        starts a new reader, placed by the wall clock, and records the gap. Nothing is failed."""
        if self.handover is None:
            self._begin_handover(None)
        self.registry.release(self.stream_id, self.holder)
        self.registry.metrics.count("livedub_ingest_handovers_total")
        log.info("%s: worker shutting down; handed the stream over (%s)", self.stream_id, stop.reason)
        return JobOutcome(None, f"handed over: {stop.reason}", self.seen)

    def _begin_handover(self, out_dir: Path | None) -> Handover:
        assert self.hand_over is not None
        rec = self.registry.get(self.stream_id, with_segments=False)
        log.info("%s: handing over: reader clock base %s, last cut %s", self.stream_id, self.base_s, self.last_end)
        self.handover = Handover(
            self.registry, self.stream_id, send=self.hand_over, monotonic=self.monotonic,
            segment_s=(rec.segment_seconds if rec and rec.segment_seconds else self.settings.segment_seconds),
            clock_now_s=progress_s(out_dir) if out_dir else 0.0,
            can_take_over=out_dir is not None and self.base_s is not None and self.last_end is not None
            and self.on_segment is not None)
        return self.handover

    def _await_seam(self, proc: subprocess.Popen[bytes], out_dir: Path, seconds: float) -> JobOutcome | None:
        """A successor reads while the old reader goes on, publishes its cuts and waits for the seam;
        then takes the lease and goes on from the seam. An outcome: it stood down."""
        assert self.successor is not None
        deadline = self.monotonic() + seam_wait_s(seconds) + 2 * self.settings.heartbeat_ttl_s
        while True:
            rec = self.registry.get(self.stream_id, with_segments=False)
            if rec is None or not self._ours(rec) or rec.input_ended or proc.poll() is not None \
                    or self.monotonic() > deadline:
                return JobOutcome(None, "takeover abandoned: the stream moved on or no seam came", 0)
            if (seam := self.successor.seam_local(rec)) is not None:
                break
            self.successor.publish_cuts(self._entries(out_dir))
            self.sleep(POLL_S)
        if not self._take_lease():
            return JobOutcome(None, "duplicate: another process runs this job", 0)
        rec = self.registry.get(self.stream_id, with_segments=False)
        if rec is None or not self._ours(rec) or not self._claim_epoch(rec):
            self.registry.release(self.stream_id, self.holder)
            return JobOutcome(None, "superseded while taking over", 0)
        self._go_on(rec)
        self.first_seq = rec.takeover_seam_seq if rec.takeover_seam_seq is not None else rec.segment_count
        self.skip_before, self.base_s = seam, self.successor.base_s
        self.registry.set_fields(self.stream_id, heartbeat_at=self.registry.clock(), handover_at="",
                                 reader_base_s=self.successor.base_s)
        log.info("%s: took the reader over at %.3fs (sequence %d)", self.stream_id, seam, self.first_seq)
        return None

    def _take_lease(self) -> bool:
        """A previous generation may still be draining, or (re-publish) this job's previous run may
        still be reading the end of its input: wait for its lease, bounded."""
        deadline = self.monotonic() + self.settings.drain_timeout_s
        while not self.registry.lease(self.stream_id, self.holder, self.settings.heartbeat_ttl_s):
            owner = self.registry.lease_owner(self.stream_id) or ""
            if (owner.split(".")[0] == self.job_id and not self.resume and not self.takeover) \
                    or self.monotonic() > deadline:
                return False
            self.sleep(POLL_S)
        return True

    def _claim_epoch(self, rec: StreamRecord) -> bool:
        """Under the lease: note which re-publish this run serves. A run for re-publish n that finds
        a later one, or one already served, stands down."""
        self.epoch = rec.resumes
        served = rec.served_epoch if rec.served_epoch is not None else -1
        if self.resume and (self.resume != self.epoch or served >= self.epoch):
            return False
        self.registry.set_fields(self.stream_id, served_epoch=self.epoch)
        return True
