"""Typed messages: media-server hook payloads, per-stream options and the stream record.

Conversion from the wire (JSON, form fields, a Redis hash) happens in the models' validators and
``from_redis`` here, apart from the HTTP and Redis code.
"""

from __future__ import annotations

import enum
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from pydantic import BaseModel, ConfigDict, Field

from worker.core.naming import StreamPath, parse_nginx_name, parse_path
from worker.core.segments import Segment
from worker.core.units import Segmentation, Unit


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
    """What MediaMTX gives a runOnAvailable / runOnUnavailable command (runOnReady / runOnNotReady before
    1.18), forwarded by the hook script."""

    model_config = ConfigDict(extra="ignore", str_max_length=1024)

    MTX_PATH: str = Field(min_length=1)
    MTX_SOURCE_TYPE: str = Field(default="", max_length=64)
    MTX_SOURCE_ID: str = Field(default="", max_length=128)
    MTX_QUERY: str = Field(default="", max_length=1024)

    def stream_path(self) -> StreamPath:
        return parse_path(self.MTX_PATH)

    def query(self) -> dict[str, str]:
        """The publish URL's query. Since 1.18.1 MediaMTX sets ``MTX_QUERY`` to ``url.QueryEscape(query)``
        (``a%3D1%26b%3D2``); older releases set the query as it came (``a=1&b=2``). Both are accepted."""
        return query_pairs(self.MTX_QUERY)


class MediaMTXAuth(BaseModel):
    """What MediaMTX posts to ``authHTTPAddress`` (``authMethod: http``) before a publish or a read, field
    for field as ``internal/auth/manager.go`` marshals it."""

    model_config = ConfigDict(extra="ignore", str_max_length=2048)

    ip: str = ""
    user: str = ""
    password: str = ""
    token: str = ""
    action: str = Field(min_length=1, max_length=32)
    path: str = ""
    protocol: str = ""
    id: str | None = None
    query: str = ""
    userAgent: str = ""  # MediaMTX's name

    def key(self) -> str | None:
        """The credential: ``?key=`` in the URL's query (what livedub hands out), else the password."""
        return query_pairs(self.query).get("key") or self.password or None


def query_pairs(raw: str) -> dict[str, str]:
    """A query string's pairs, once-escaped or not: an escaped query has no ``=`` of its own. Pure."""
    if "=" not in raw and "%3d" in raw.lower():
        raw = unquote_plus(raw)
    return dict(parse_qsl(raw))


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



class StreamOptions(BaseModel):
    """Per-stream options, from the publish URL's query (``?segment_seconds=4&target_language=fr``)."""

    model_config = ConfigDict(extra="ignore")

    segment_seconds: float | None = Field(None, gt=0.5, le=60)
    target_language: str | None = Field(None, pattern=r"^[a-z]{2,3}$")
    voice_profile: str | None = Field(None, pattern=r"^[a-z0-9_-]{1,32}$")
    segmentation: Segmentation | None = None  # speech (units follow the speaker) or fixed (6 s fragments)
    latency_s: float | None = Field(None, ge=3.0, le=30)  # speech mode: how far the output runs behind


class StreamConf(BaseModel):
    """A stream an operator created: its options and its keys, stored as SHA-256 hashes (the keys are
    192-bit random, so a plain hash is enough; the key itself is shown once, when made)."""

    stream_id: str
    key_sha256: str
    options: StreamOptions = Field(default_factory=StreamOptions)
    private: bool = False  # readers of live/<id>/out need the play key
    play_sha256: str | None = None
    created_at: float
    rotated_at: float | None = None


# StreamRecord's fields that are not the record's own (Redis keeps them apart, a read fills them in).
LISTED_FIELDS = frozenset({"segments", "units", "segments_total", "units_total"})


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
    segmentation: Segmentation | None = None
    latency_s: float | None = None
    sealed_until_s: float | None = None  # speech mode: pieces up to here have their audio made
    units_retired: int = 0  # speech mode: the units before this one have had their files removed
    heard_until_s: float | None = None  # speech mode: the detector has heard the input up to here
    sts_estimate_s: float | None = None  # speech mode: the STS round trip unit lengths allow for now
    hear_estimate_s: float | None = None  # speech mode: how late the detector hears the input, as they allow for
    segments_final: int | None = None  # set when the input has ended: how many segments there are
    output_url: str | None = None
    published_count: int = 0
    publisher_state: str | None = None
    publisher_reason: str | None = None
    last_glass_to_glass_s: float | None = None
    last_av_offset_start_ms: float | None = None
    last_av_offset_end_ms: float | None = None
    # Job bookkeeping: leases and heartbeats, reader parts, re-publish epochs.
    input_url: str | None = None
    heartbeat_at: float | None = None  # the ingest job's last beat
    publisher_heartbeat_at: float | None = None
    ended_input_at: float | None = None
    ingest_part: int = 0  # reader runs of this job so far (a part per run)
    ingest_restarts: int = 0  # times the publisher ran a dead ingest job again
    served_epoch: int | None = None  # the re-publish epoch a reader run took on
    publisher_sealed: bool = False  # the publisher is done: a re-publish starts a new generation
    # A worker that shuts down (a redeploy) hands its run over: the job is queued again and goes on.
    handover_at: float | None = None  # set while a handover waits for a worker; cleared when one takes it
    handovers: int = 0
    publisher_handovers: int = 0
    last_gap_s: float | None = None  # media lost between a run and the one that went on (handover, death)
    # The running reader's clock: server timestamps less reader_base_s; the timeline is that plus
    # reader_offset_s. A takeover (make before break) starts a second reader a whole number of segments
    # behind, trades cut times (in the old reader's clock) and meets the old one at a common cut.
    reader_base_s: float | None = None
    reader_offset_s: float | None = None
    takeover_from_s: float | None = None  # the old reader's clock when it asked to be taken over
    takeover_by: str | None = None  # the run that took it on, or "abandoned"
    takeover_cuts: str | None = None  # the new reader's cuts so far, comma-separated
    takeover_seam_s: float | None = None  # where the old reader stopped (its clock)
    takeover_seam_seq: int | None = None  # the sequence the new reader goes on with
    segments: list[Segment] = Field(default_factory=list)
    units: list[Unit] = Field(default_factory=list)  # speech mode
    # A paged read (GET /v1/streams/<id>) lists some of the segments and units, and says how many there are.
    segments_total: int | None = None
    units_total: int | None = None

    @classmethod
    def from_redis(cls, fields: dict[str, str], segments: list[Segment] | None = None,
                   units: list[Unit] | None = None) -> StreamRecord:
        data: dict[str, Any] = {k: v for k, v in fields.items() if v != ""}
        for flag in ("stop_requested", "publisher_sealed"):
            data[flag] = data.get(flag) == "1"
        return cls(**data, segments=segments or [], units=units or [])

    @property
    def input_ended(self) -> bool:
        """The ingest side is done (the publisher now owns the stream's end)."""
        return self.segments_final is not None
