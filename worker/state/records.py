"""The registry's vocabulary: which fields a stream record and a segment may carry, the outcomes of a
start, the two leases."""

from __future__ import annotations

import enum
from typing import NamedTuple

from worker.core.models import LISTED_FIELDS, StreamRecord
from worker.core.segments import Segment

RECORD_FIELDS = frozenset(StreamRecord.model_fields) - LISTED_FIELDS
SEGMENT_FIELDS = frozenset(Segment.model_fields)


class StartOutcome(enum.StrEnum):
    EXISTING = "existing"  # starting or live: the same job goes on
    CREATED = "created"  # a new generation
    RESUMED = "resumed"  # the input came back while the output still drained
    AT_LIMIT = "at_limit"  # refused: as many streams as the limit are active already


class Lease(enum.StrEnum):
    INGEST = "lease"
    PUBLISHER = "publisher"


class StartResult(NamedTuple):
    job_id: str
    outcome: StartOutcome
    resume: int  # how many times a re-publish resumed this job (for "resumed"); the active count (at_limit)

    @property
    def created(self) -> bool:
        return self.outcome is StartOutcome.CREATED


def _s(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
