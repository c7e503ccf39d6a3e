"""What the per-segment chain passes from stage to stage: keys and numbers, never media bytes.

extraction -> :class:`SegmentWork` -> STS-dispatch -> :class:`DubbedSegment` -> collect ->
:class:`FittedSegment` -> remux -> :class:`PieceOutcome`. Each says what its stage produced; a stage that
gave up carries ``fallback`` and the stages after it pass it on untouched.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from worker.core.segments import Reason
from worker.core.timing import AUDIO_RATE


class DubRequest(BaseModel):
    """What STS-dispatch needs of anything it dubs: a segment (fixed mode) or a speech unit."""

    stream_id: str
    job_id: str
    sequence: int
    orig_key: str  # the original audio, 48 kHz stereo s16le: audio_samples long, and look_samples more
    start_s: float
    end_s: float
    audio_samples: int
    deadline_at: float
    source_language: str
    target_language: str
    voice_profile: str
    look_samples: int = Field(0, ge=0)  # the audio after it (a unit cut inside speech: the rest of the word)

    @property
    def fragment_id(self) -> str:
        return f"{self.stream_id}-{self.job_id[:8]}-{self.sequence}"

    def fragment_metadata(self, bounds: bool = False) -> dict[str, object]:
        """``bounds``: the server decodes only a fragment's own words (it advertises ``speech_bounds``)."""
        return {"pts_ns": int(self.start_s * 1e9)}


class SegmentWork(DubRequest):
    """A prepared segment: where its media is, where it sits on the stream's timeline, its deadline."""

    segment_key: str  # the video segment as cut (MPEG-TS)
    audio_start_sample: int
    ts_offset_s: float = 0.0  # a resumed reader's part: its clock starts at 0, the stream's does not

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class StageResult(BaseModel):
    work: SegmentWork
    timings_ms: dict[str, float] = Field(default_factory=dict)
    fallback: Reason | None = None


class DubAudio(BaseModel):
    """Dubbed audio as the STS service returned it, stored under ``key``."""

    key: str
    format: str
    sample_rate_hz: int
    channels: int


class DubbedSegment(StageResult):
    """STS-dispatch -> collect. ``dub`` None without a fallback: the service answered with empty audio
    (nothing to say), and the original audio goes out untouched."""

    dub: DubAudio | None = None
    transcript: str = ""
    translated_text: str = ""


class FittedSegment(StageResult):
    """collect -> remux: the audio for the piece, exactly the segment's slot long (48 kHz stereo s16le)."""

    fit_key: str | None = None


class PieceOutcome(StageResult):
    """remux's result: the dubbed piece, ready for the publisher."""

    piece_key: str | None = None


class UnitWork(DubRequest):
    """A closed speech unit (speech mode): its audio, its place, and the context the STS service may use:
    the transcript of the units before it (the ASR prompt) and the start of a sentence it ends."""

    context: str = ""
    continues_sentence: bool = False  # it goes on with the sentence of the unit before (units.goes_on)
    skip_s: float = Field(0.0, ge=0)  # the word the unit before kept runs this far into its audio

    @property
    def fragment_id(self) -> str:
        return f"{self.stream_id}-{self.job_id[:8]}-u{self.sequence}"

    def fragment_metadata(self, bounds: bool = False) -> dict[str, object]:
        """``bounds`` (worker/sts/bounds.py): where its own audio ends when more follows it, and how much of
        its start the unit before took."""
        meta: dict[str, object] = {"pts_ns": int(self.start_s * 1e9), "unit": "speech"}
        ctx: dict[str, object] = {}
        if self.context or (bounds and self.continues_sentence):  # the server may know the words before
            ctx = {"previous_transcript": self.context, "continues_sentence": self.continues_sentence}
        if bounds and self.look_samples:
            ctx["until_ms"] = round(self.audio_samples * 1000 / AUDIO_RATE)
        if bounds and self.skip_s > 0:
            ctx["skip_ms"] = round(self.skip_s * 1000)
        if ctx:
            meta["context"] = ctx
        return meta


class DubbedUnit(BaseModel):
    """STS-dispatch -> collect for a unit."""

    work: UnitWork
    timings_ms: dict[str, float] = Field(default_factory=dict)
    fallback: Reason | None = None
    dub: DubAudio | None = None
    transcript: str = ""
    translated_text: str = ""


class PieceWork(BaseModel):
    """A sealed video piece (speech mode): remux makes its audio from the timeline."""

    stream_id: str
    job_id: str
    sequence: int
    segment_key: str
    orig_key: str
    timeline_sample: int  # the piece's first audio sample on the stream's timeline
    audio_start_sample: int  # the same in its reader's own clock (what piece timestamps use)
    audio_samples: int
    deadline_at: float
    ts_offset_s: float = 0.0
    lead_samples: int = 0  # orig_key's audio begins this much before the piece and runs SEAM_AHEAD past it
    first_unit: int = 0  # the units whose dubs may be placed in it (set at its seal)
    last_unit: int = -1
