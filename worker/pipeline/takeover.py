"""Make before break: how a shutting-down ingest worker hands its live reader to another worker.

The old run (shutting down) records its reader's clock and queues the job again. The run that claims it
(:class:`Successor`) starts a second reader whose clock runs a whole number of segments behind the old
one (:func:`worker.core.timing.takeover_shift`), so both segment muxers cut on one grid, at the same
keyframes. The new run publishes its cut times in the old clock; the old run (:class:`Handover`) stops
registering at the first of its own cuts that the new reader also made (the seam), records the seam and
the next sequence number, and stops its reader. The new run goes on from the segment that starts at the
seam: no gap, no duplicate. If no worker claims the stream, or no common cut comes in time, the old run
stops anyway (the gap is measured and recorded, as after a crash).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from worker.core.models import StreamRecord
from worker.core.timing import matching_cut, takeover_shift
from worker.media.parse import ListEntry
from worker.state.registry import StreamRegistry

log = logging.getLogger(__name__)
ABANDONED = "abandoned"
CLAIM_WAIT_S = 10.0  # how long the old run waits for another worker of the pool to claim the stream
# The shutting-down worker's own consumer may still hold a blocking pop on the queue for a moment after
# the SIGTERM (kombu's Redis transport), and swallow the request until it exits: unclaimed, it is sent
# again (a late copy finds the stream claimed and stands down).
RESEND_S = 2.0
TAKEOVER_FIELDS = ("takeover_by", "takeover_cuts", "takeover_seam_s", "takeover_seam_seq")


def format_cuts(cuts: list[float]) -> str:
    return ",".join(f"{c:.6f}" for c in cuts)


def parse_cuts(text: str | None) -> list[float]:
    return [float(c) for c in (text or "").split(",") if c]


def seam_wait_s(segment_s: float) -> float:
    """How long the old reader goes on waiting for a common cut: the new reader's start, plus a few
    segments for its muxer to reach the grid."""
    return CLAIM_WAIT_S + 3 * segment_s


class Handover:
    """The old run's side. Created when the worker is told to shut down; asks for a successor at once."""

    def __init__(self, registry: StreamRegistry, stream_id: str, *, segment_s: float, clock_now_s: float,
                 send: Callable[[int], None], can_take_over: bool,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.registry, self.stream_id, self.monotonic = registry, stream_id, monotonic
        self.started = monotonic()
        self.seam_deadline = self.started + seam_wait_s(segment_s)
        self.seam: float | None = None
        self.abandoned = False
        self.cuts: list[float] = []
        registry.clear_fields(stream_id, *TAKEOVER_FIELDS)
        registry.set_fields(stream_id, takeover_from_s=round(clock_now_s, 6), handover_at=registry.clock())
        if not can_take_over:  # its clock is not known yet: a plain handover, the successor resumes
            self.abandoned = registry.claim(stream_id, "takeover_by", ABANDONED)
        self.n = registry.incr(stream_id, "handovers") or 1
        self.send, self.sent_at = send, self.started
        send(self.n)

    def refresh(self, rec: StreamRecord | None) -> None:
        """Read the new reader's cuts; after the claim wait with no successor, give the stream up."""
        if rec is None or self.abandoned:
            return
        now = self.monotonic()
        if rec.takeover_by is None and now > self.started + CLAIM_WAIT_S:
            self.abandoned = self.registry.claim(self.stream_id, "takeover_by", ABANDONED)
            if self.abandoned:
                log.info("%s: no worker took the stream on; stopping the reader anyway", self.stream_id)
                return
        elif rec.takeover_by is None and now > self.sent_at + RESEND_S:
            self.send(self.n)
            self.sent_at = now
        cuts = parse_cuts(rec.takeover_cuts)
        if cuts != self.cuts:
            log.info("%s: the new reader cut at %s", self.stream_id, cuts)
        self.cuts = cuts

    def meet(self, t_s: float, next_seq: int) -> bool:
        """Is ``t_s`` (a cut of the old reader) also the new reader's? Then it is the seam."""
        if self.seam is not None or self.abandoned or matching_cut(t_s, self.cuts) is None:
            return False
        self.set_seam(t_s, next_seq)
        return True

    def overdue(self) -> bool:
        return self.seam is None and not self.abandoned and self.monotonic() > self.seam_deadline

    def set_seam(self, t_s: float, next_seq: int) -> None:
        self.seam = t_s
        self.registry.set_fields(self.stream_id, takeover_seam_s=round(t_s, 6), takeover_seam_seq=next_seq)


class Successor:
    """The new run's side: where its reader's clock sits, and what it tells the old run."""

    def __init__(self, registry: StreamRegistry, stream_id: str, rec: StreamRecord, segment_s: float) -> None:
        assert rec.reader_base_s is not None and rec.takeover_from_s is not None
        self.registry, self.stream_id = registry, stream_id
        self.shift = takeover_shift(rec.takeover_from_s, segment_s)
        self.base_s = rec.reader_base_s + self.shift
        self.offset_s = (rec.reader_offset_s or 0.0) + self.shift
        self.published = ""

    def publish_cuts(self, entries: list[ListEntry]) -> None:
        """The new reader's cuts (where each closed segment ended and the next began), in the old clock."""
        text = format_cuts([e.end_s + self.shift for e in entries])
        if text != self.published:
            self.registry.set_fields(self.stream_id, takeover_cuts=text)
            self.published = text

    def seam_local(self, rec: StreamRecord) -> float | None:
        """The seam in the new reader's clock, once the old run has set it."""
        return None if rec.takeover_seam_s is None else rec.takeover_seam_s - self.shift
