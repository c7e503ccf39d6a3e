"""Typed messages: media-server hook payloads, stream records and segments.

Conversion from the wire (JSON / form fields / Redis hashes) happens in the ``from_*`` / ``to_*``
functions here, apart from the HTTP and Redis code.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from worker.naming import StreamPath, parse_nginx_name, parse_path


class StreamState(enum.StrEnum):
    STARTING = "starting"
    LIVE = "live"
    DRAINING = "draining"
    ENDED = "ended"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self in (StreamState.STARTING, StreamState.LIVE, StreamState.DRAINING)


class MediaMTXHook(BaseModel):
    """What MediaMTX gives a runOnReady / runOnNotReady command, forwarded by the hook script."""

    model_config = ConfigDict(extra="ignore", str_max_length=1024)

    MTX_PATH: str = Field(min_length=1)
    MTX_SOURCE_TYPE: str = Field(default="", max_length=64)
    MTX_SOURCE_ID: str = Field(default="", max_length=128)
    MTX_QUERY: str = Field(default="", max_length=1024)

    def stream_path(self) -> StreamPath:
        return parse_path(self.MTX_PATH)


class NginxRtmpHook(BaseModel):
    """nginx-rtmp's form-encoded callback (on_publish, on_publish_done, on_play)."""

    model_config = ConfigDict(extra="ignore", str_max_length=1024)

    app: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    call: str = Field(default="", max_length=32)
    addr: str = Field(default="", max_length=64)
    clientid: str = Field(default="", max_length=32)
    type: str = Field(default="", max_length=32)

    def stream_path(self) -> StreamPath:
        return parse_nginx_name(self.app, self.name)


class Segment(BaseModel):
    """One cut of the live input. ``status`` ends as processed, fallback or failed (with a reason)."""

    model_config = ConfigDict(extra="ignore")

    sequence: int = Field(ge=0)
    status: str = "extracted"
    reason: str | None = None
    start_s: float
    end_s: float
    file: str
    transcript: str | None = None
    translated_text: str | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
    audio_start_sample: int | None = None
    audio_samples: int | None = None
    deadline_at: float | None = None
    dub: str | None = None  # "ready" | "fallback" (the chain's outcome)
    dub_reason: str | None = None
    piece: str | None = None
    fallback_piece: str | None = None
    stretch_ratio: float | None = None
    trimmed_s: float | None = None
    completed_at: float | None = None  # the segment's list line was seen
    ready_at: float | None = None  # its dubbed piece was ready
    published_at: float | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class StreamOptions(BaseModel):
    """Per-stream options, from the publish URL's query (``?segment_seconds=4&target_language=fr``)."""

    model_config = ConfigDict(extra="ignore")

    segment_seconds: float | None = Field(None, gt=0.5, le=60)
    target_language: str | None = Field(None, pattern=r"^[a-z]{2,3}$")
    voice_profile: str | None = Field(None, pattern=r"^[a-z0-9_-]{1,32}$")


class ChainMsg(BaseModel):
    """What the per-segment chain passes from task to task: keys and numbers, never media bytes."""

    stream_id: str
    job_id: str
    sequence: int
    segment_key: str
    orig_key: str
    start_s: float
    end_s: float
    audio_start_sample: int
    audio_samples: int
    deadline_at: float
    source_language: str
    target_language: str
    voice_profile: str
    ts_offset_s: float = 0.0  # a resumed reader's part: its clock starts at 0, the stream's does not
    dub_key: str | None = None
    dub_format: str = "wav"
    dub_rate: int = 48000
    dub_channels: int = 2
    transcript: str = ""
    translated_text: str = ""
    timings_ms: dict[str, float] = Field(default_factory=dict)
    fallback_reason: str | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class StreamRecord(BaseModel):
    """The registry's view of a stream, as ``GET /v1/streams/<id>`` shows it."""

    stream_id: str
    state: StreamState
    job_id: str
    generation: int = 1
    resumes: int = 0  # times a re-publish resumed this job (numbering went on)
    source: str = ""
    created_at: float
    updated_at: float
    live_at: float | None = None
    draining_at: float | None = None
    ended_at: float | None = None
    reader_connected_at: float | None = None
    reason: str | None = None
    last_error: str | None = None
    stop_requested: bool = False
    segment_count: int = 0
    media_seconds: float = 0.0
    media_bytes: int = 0
    # Pipeline: media time 0 is at wall time origin_at; the output runs output_delay_s behind.
    origin_at: float | None = None
    output_delay_s: float | None = None
    segment_seconds: float | None = None
    target_language: str | None = None
    voice_profile: str | None = None
    segments_final: int | None = None  # set when the input has ended: how many segments there are
    output_url: str | None = None
    published_count: int = 0
    publisher_state: str | None = None
    publisher_reason: str | None = None
    last_glass_to_glass_s: float | None = None
    last_av_offset_start_ms: float | None = None
    last_av_offset_end_ms: float | None = None
    segments: list[Segment] = Field(default_factory=list)

    @classmethod
    def from_redis(cls, fields: dict[str, str], segments: list[Segment]) -> StreamRecord:
        data: dict[str, Any] = {k: v for k, v in fields.items() if v != ""}
        data["stop_requested"] = data.get("stop_requested") == "1"
        return cls(**data, segments=segments)
