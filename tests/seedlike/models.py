"""Messages as the seed project's STS protocol v1.0 defines them: strict, for the seed-like fixtures.

Written from the facts in issue 13 and docs/sts-protocol.md (types, ranges, required fields), not
copied: ints where v1.0 has ints, ``data_base64`` required, no binary audio, v1.0's limits.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class Strict(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Config(Strict):
    source_language: str = "en"
    target_language: str = "zh"
    voice_profile: str = "default"
    chunk_duration_ms: StrictInt = Field(1000, ge=100, le=6000)
    sample_rate_hz: StrictInt = 48000
    channels: StrictInt = Field(1, ge=1, le=2)
    format: str = "m4a"


class Init(Strict):
    stream_id: str
    worker_id: str
    config: Config = Field(default_factory=Config)
    max_inflight: StrictInt = Field(3, ge=1, le=10)
    timeout_ms: StrictInt = Field(8000, ge=1000, le=30000)


class Audio(Strict):
    format: str
    sample_rate_hz: StrictInt
    channels: StrictInt
    duration_ms: StrictInt = Field(ge=0)
    data_base64: str = Field(min_length=1)


class Fragment(Strict):
    fragment_id: str
    stream_id: str
    sequence_number: StrictInt = Field(ge=0)
    timestamp: StrictInt  # Unix ms
    audio: Audio
    metadata: dict[str, object] | None = None


class Timings(Strict):
    asr_ms: StrictInt = Field(0, ge=0)
    translation_ms: StrictInt = Field(0, ge=0)
    tts_ms: StrictInt = Field(0, ge=0)


class Error(Strict):
    code: str
    message: str
    stage: Literal["asr", "translation", "tts"] | None = None
    retryable: bool = False


class Processed(Strict):
    fragment_id: str
    stream_id: str
    sequence_number: StrictInt = Field(ge=0)
    status: Literal["success", "partial", "failed"]
    dubbed_audio: Audio | None = None
    transcript: str | None = None
    translated_text: str | None = None
    processing_time_ms: StrictInt = Field(ge=0)
    stage_timings: Timings | None = None
    error: Error | None = None
    metadata: dict[str, object] | None = None


class Ack(Strict):
    fragment_id: str
    status: Literal["queued", "processing", "received", "applied"]
    timestamp: StrictInt | None = None


class Backpressure(Strict):
    stream_id: str
    severity: Literal["low", "medium", "high"]
    current_inflight: StrictInt
    queue_depth: StrictInt
    action: Literal["slow_down", "pause", "none"]
    recommended_delay_ms: StrictInt | None = None


class Statistics(Strict):
    total_fragments: StrictInt = 0
    success_count: StrictInt
    partial_count: StrictInt
    failed_count: StrictInt
    avg_processing_time_ms: float
    p95_processing_time_ms: float


class Complete(Strict):
    stream_id: str
    total_fragments: StrictInt
    total_duration_ms: StrictInt
    statistics: Statistics
