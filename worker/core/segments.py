"""A segment's life as typed values: its status, why it fell back or failed, and the record itself."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class SegmentStatus(enum.StrEnum):
    """Where a segment is. It ends as one of :data:`TERMINAL`, and is counted there once."""

    EXTRACTED = "extracted"
    PROCESSED = "processed"
    FALLBACK = "fallback"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({SegmentStatus.PROCESSED, SegmentStatus.FALLBACK, SegmentStatus.FAILED})


class DubOutcome(enum.StrEnum):
    """What the per-segment chain produced for the publisher."""

    READY = "ready"
    FALLBACK = "fallback"


class ReasonCode(enum.StrEnum):
    """Why a segment fell back or failed. A bounded set: it is a metric label."""

    STS_FAILED = "sts_failed"
    STS_TIMEOUT = "sts_timeout"
    STS_UNREACHABLE = "sts_unreachable"
    CIRCUIT_OPEN = "circuit_open"
    LATE = "late"
    COLLECT_FAILED = "collect_failed"
    REMUX_FAILED = "remux_failed"
    PREPARE_FAILED = "prepare_failed"
    NO_VIDEO = "no_video"
    LOST_WITH_WORKER = "lost_with_worker"
    STREAM_ENDED = "stream_ended"
    PUBLISHER_STOPPED = "publisher_stopped"
    STORE_UNAVAILABLE = "store_unavailable"


@dataclass(frozen=True)
class Reason:
    """A reason: its code (for metrics and decisions) and the human text (for people)."""

    code: ReasonCode
    text: str

    def __str__(self) -> str:
        return f"{self.code.value}: {self.text}"

    def fields(self, prefix: str = "") -> dict[str, str]:
        """The record fields that carry it: ``<prefix>reason`` (text) and ``<prefix>reason_code``."""
        return {f"{prefix}reason": self.text, f"{prefix}reason_code": self.code.value}


LATE = Reason(ReasonCode.LATE, "the dub was not ready at the deadline")


class Segment(BaseModel):
    """One cut of the live input. ``status`` ends as processed, fallback or failed (with a reason)."""

    model_config = ConfigDict(extra="ignore")

    sequence: int = Field(ge=0)
    status: SegmentStatus = SegmentStatus.EXTRACTED
    reason: str | None = None
    reason_code: ReasonCode | None = None
    start_s: float
    end_s: float
    file: str
    transcript: str | None = None
    translated_text: str | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
    audio_start_sample: int | None = None
    audio_samples: int | None = None
    deadline_at: float | None = None
    dub: DubOutcome | None = None  # the chain's outcome
    dub_reason: str | None = None
    dub_reason_code: ReasonCode | None = None
    piece: str | None = None
    fallback_piece: str | None = None
    av_offset_start_ms: float | None = None  # audio against video at the piece's start, as placed
    av_offset_end_ms: float | None = None
    stretch_ratio: float | None = None
    trimmed_s: float | None = None
    completed_at: float | None = None  # the segment's list line was seen
    ready_at: float | None = None  # its dubbed piece was ready
    sealed_at: float | None = None  # speech mode: its audio was made from the timeline
    published_at: float | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def dub_fallback(self) -> Reason | None:
        """Why the chain gave up on this segment's dub, or None."""
        if self.dub is not DubOutcome.FALLBACK:
            return None
        return Reason(self.dub_reason_code or ReasonCode.STS_FAILED, self.dub_reason or "")
