"""What every chain stage does when it gives up on a segment's dub, and when it skips a segment."""

from __future__ import annotations

import logging

from worker.core.messages import SegmentWork
from worker.core.segments import DubOutcome, Reason
from worker.state.registry import StreamRegistry

log = logging.getLogger(__name__)


def give_up(work: SegmentWork, registry: StreamRegistry, reason: Reason, **fields: object) -> Reason:
    """Record that the segment's dub falls back (with any other fields, in the same write)."""
    log.info("%s #%d falls back: %s", work.stream_id, work.sequence, reason)
    registry.update_segment(work.stream_id, work.sequence, dub=DubOutcome.FALLBACK, **reason.fields("dub_"),
                            **fields)
    return reason


def expired(work: SegmentWork, now: float) -> bool:
    """Past its deadline the publisher has put out the segment's fallback: a late or redelivered task
    (its worker died) does no work and leaves the record as the publisher wrote it."""
    return now > work.deadline_at
