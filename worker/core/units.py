"""A speech unit's life as a typed value: a stretch of speech dubbed as one, placed on the timeline."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field

from worker.core.segments import ReasonCode, SegmentStatus
from worker.core.speech import CutKind


class Segmentation(enum.StrEnum):
    """How a stream is cut into dubbing units."""

    FIXED = "fixed"  # one unit per video segment (the seed's fixed-length fragments)
    SPEECH = "speech"  # units follow the speaker's pauses; video pieces stay cut at keyframes


def segmentation_of(chosen: Segmentation | None, default: Segmentation) -> Segmentation:
    """A stream's segmentation: its own option, else the deployment's default. Pure."""
    return chosen if chosen is not None else default


class Unit(BaseModel):
    """One unit of speech. ``status`` ends as processed (its dub placed), fallback (the original goes out
    under it, with a reason) or failed."""

    model_config = ConfigDict(extra="ignore")

    sequence: int = Field(ge=0)
    start_s: float  # the speech, in seconds from the stream's first frame
    end_s: float
    cut: CutKind
    status: SegmentStatus = SegmentStatus.EXTRACTED
    reason: str | None = None
    reason_code: ReasonCode | None = None
    transcript: str | None = None
    translated_text: str | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
    closed_at: float | None = None  # wall time the unit closed (its pause was heard)
    deadline_at: float | None = None  # its dub must be placed by then
    next_start_s: float | None = None  # where the speech after it starts (its dub may not pass it)
    clear_until_s: float | None = None  # no speech after it heard up to here, when it closed
    spoken_until_s: float | None = None  # cut inside speech: where the last word its dub says ends
    dub_start_s: float | None = None  # where its dub was placed
    dub_end_s: float | None = None
    lag_s: float | None = None  # dub start less unit start
    stretch_ratio: float | None = None
    trimmed_s: float | None = None
    dub_key: str | None = None  # the placed dub, 48 kHz stereo s16le
    placed_at: float | None = None

    @property
    def settled(self) -> bool:
        return self.status.terminal

    def round_trip_s(self, late_s: float) -> float | None:
        """How long its dub took from the unit's close to its place on the timeline; ``late_s`` for a dub
        that came too late or never (how late is not known: the caller's estimate and a step more). A
        failure for another reason (the STS service refused it, a media error) says nothing about the
        time: None."""
        if self.closed_at is None:
            return None
        if self.status is SegmentStatus.PROCESSED and self.placed_at is not None:
            return max(0.0, self.placed_at - self.closed_at)
        if self.status is SegmentStatus.FALLBACK and self.reason_code in (ReasonCode.LATE, ReasonCode.STS_TIMEOUT):
            return late_s
        return None


def goes_on(before: Unit | None, unit: Unit) -> bool:
    """``unit`` goes on with the sentence of the unit before it: that one was cut inside speech (at its
    maximum, no pause came) and this one starts at the cut. One that starts later began after a pause (the
    cut fell at a sentence's end). Pure."""
    return before is not None and before.cut is CutKind.QUIET and abs(unit.start_s - before.end_s) < 1e-3
