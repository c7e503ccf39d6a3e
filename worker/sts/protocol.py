"""The STS Socket.IO protocol, v1.0 as the seed project defines it, plus livedub's negotiated
extensions (docs/sts-protocol.md), as typed messages.

What livedub sends keeps v1.0's types (ints where v1.0 has ints); what it reads accepts every optional
v1.0 field as null. The extensions (binary audio, PCM formats, ``monitor:subscribe``) are used only
with a server whose ``stream:ready`` capabilities advertise them (:func:`speaks_extensions`).

Conversion to and from the wire (dicts, base64 or binary audio) lives here, apart from socket code.
Events, client -> server: ``stream:init``, ``fragment:data``, ``fragment:ack``, ``stream:pause``,
``stream:resume``, ``stream:end``. Server -> client: ``stream:ready``, ``fragment:ack``,
``fragment:processed``, ``backpressure``, ``stream:complete``, ``error``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PROTOCOL_VERSION = "1.0"
DEFAULT_NAMESPACE = "/"
AUDIO_FORMATS = ("pcm_s16le", "wav", "m4a")
SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
ID = Field(min_length=1, max_length=128)


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class StreamConfig(Wire):
    source_language: str = Field("en", min_length=2, max_length=16)
    target_language: str = Field("es", min_length=2, max_length=16)
    voice_profile: str = Field("default", max_length=64)
    chunk_duration_ms: int = Field(6000, gt=0, le=120_000)
    sample_rate_hz: int = 16000
    channels: int = 1
    format: str = "pcm_s16le"


class StreamInit(Wire):
    stream_id: str = ID
    worker_id: str = Field("", max_length=128)
    config: StreamConfig = Field(default_factory=StreamConfig)
    max_inflight: int = Field(3, ge=1, le=64)
    timeout_ms: int = Field(8000, ge=100, le=600_000)


class StreamReady(Wire):
    stream_id: str = ""
    session_id: str
    max_inflight: int
    capabilities: dict[str, Any] = Field(default_factory=dict)


def speaks_extensions(caps: dict[str, Any]) -> bool:
    """A livedub-style server: binary audio and PCM. A plain v1.0 server (the seed's) advertises only
    ``batch_processing``/``async_delivery``; it is sent m4a as base64."""
    return bool(caps.get("binary_data")) and "pcm_s16le" in (caps.get("formats") or ())


# v1.0's ranges (the seed's servers refuse anything outside them).
V1_MAX_CHUNK_MS = 6000
V1_INFLIGHT = (1, 10)
V1_TIMEOUT_MS = (1000, 30000)


class AudioIn(Wire):
    format: str
    sample_rate_hz: int
    channels: int
    duration_ms: int | float = Field(ge=0)
    data_base64: str | None = None
    data: bytes | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> AudioIn:
        if self.data is None and self.data_base64 is None:
            raise ValueError("audio needs data_base64 or binary data")
        return self

    def raw(self) -> bytes:
        if self.data is not None:
            return self.data
        try:
            return base64.b64decode(self.data_base64 or "", validate=True)
        except binascii.Error as exc:
            raise ValueError(f"data_base64 is not base64: {exc}") from exc

    def payload_size(self) -> int:
        return len(self.data) if self.data is not None else len(self.data_base64 or "") * 3 // 4


class FragmentData(Wire):
    fragment_id: str = ID
    stream_id: str = ID
    sequence_number: int = Field(ge=0)
    timestamp: int | float = 0  # v1.0: Unix ms, an int (livedub sends one; it accepts a float)
    audio: AudioIn
    metadata: dict[str, Any] = Field(default_factory=dict)


class FragmentAck(Wire):
    fragment_id: str
    status: Literal["queued", "processing", "received", "applied"]
    timestamp: int | None = None  # Unix ms
    queue_position: int | None = None


class AudioOut(Wire):
    format: str
    sample_rate_hz: int
    channels: int
    duration_ms: int
    data_base64: str | None = None
    data: bytes | None = None

    def raw(self) -> bytes:
        return self.data if self.data is not None else base64.b64decode(self.data_base64 or "")

    def to_wire(self) -> dict[str, Any]:
        out = self.model_dump(mode="python", exclude_none=True)  # keep bytes as bytes (binary attachment)
        return out


class StageTimings(Wire):
    asr_ms: int = 0
    translation_ms: int = 0
    tts_ms: int = 0


class ErrorInfo(Wire):
    code: str
    message: str = ""
    stage: Literal["asr", "translation", "tts"] | None = None
    retryable: bool = False


class FragmentProcessed(Wire):
    fragment_id: str
    stream_id: str
    sequence_number: int
    status: Literal["success", "partial", "failed"]
    dubbed_audio: AudioOut | None = None
    transcript: str | None = None
    translated_text: str | None = None
    processing_time_ms: int = 0
    stage_timings: StageTimings | None = None
    error: ErrorInfo | None = None
    metadata: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude_none=True, exclude={"dubbed_audio"})
        if self.dubbed_audio is not None:
            out["dubbed_audio"] = self.dubbed_audio.to_wire()
        return out


class Backpressure(Wire):
    stream_id: str
    severity: Literal["low", "medium", "high"] = "low"
    current_inflight: int | None = None
    queue_depth: int | None = None
    action: Literal["slow_down", "pause", "none"]
    recommended_delay_ms: int | None = None


class Statistics(Wire):
    total_fragments: int = 0
    success_count: int = 0
    partial_count: int = 0
    failed_count: int = 0
    avg_processing_time_ms: float = 0
    p95_processing_time_ms: float = 0


class StreamComplete(Wire):
    stream_id: str
    total_fragments: int = 0
    total_duration_ms: int = 0
    statistics: Statistics = Field(default_factory=Statistics)


class ErrorEvent(Wire):
    code: str
    message: str = ""
    severity: str = "error"
    retryable: bool = False
    stream_id: str | None = None
    fragment_id: str | None = None


class StreamRef(Wire):
    stream_id: str = ID


def validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "payload"
    return f"{where}: {first['msg']}"


def encode_audio(data: bytes, fmt: str, rate: int, channels: int, duration_ms: float, binary: bool) -> AudioOut:
    ms = round(duration_ms)
    if binary:
        return AudioOut(format=fmt, sample_rate_hz=rate, channels=channels, duration_ms=ms, data=data)
    return AudioOut(format=fmt, sample_rate_hz=rate, channels=channels, duration_ms=ms,
                    data_base64=base64.b64encode(data).decode())
