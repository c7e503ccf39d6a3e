"""The one settings module. Every setting is read from the environment (prefix ``LIVEDUB_``) when
:func:`load_settings` is called, never at import time."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.core.units import Segmentation

MediaServerKind = Literal["nginx-rtmp", "mediamtx"]


SECRETS = ("hook_secret", "sts_token", "operator_token", "viewer_token", "internal_key", "store_secret_key")
MIN_SECRET_LEN = 16


def check_secret(name: str, secret: SecretStr | None) -> None:
    """Refuse, at start, a secret left at .env.example's placeholder or too short to resist guessing."""
    value = secret.get_secret_value() if secret is not None else ""
    if not value:
        return
    if value.startswith("change-me"):
        raise ValueError(f"LIVEDUB_{name.upper()} is still the placeholder from .env.example: set a random one "
                         "(python -c 'import secrets; print(secrets.token_urlsafe(24))')")
    if len(value) < MIN_SECRET_LEN:
        raise ValueError(f"LIVEDUB_{name.upper()} is shorter than {MIN_SECRET_LEN} characters")


class Settings(BaseSettings):
    """Deployment settings. ``.env.example`` in ``compose/`` lists every one of them."""

    model_config = SettingsConfigDict(env_prefix="LIVEDUB_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Shared secret for media-server hooks; read from the env or from a file.
    hook_secret: SecretStr | None = None
    hook_secret_file: Path | None = None
    # A deployment with no secret must say so explicitly.
    hook_insecure: bool = False
    # Tokens for the stream API and the dashboard: a viewer reads, an operator also creates, stops and
    # rotates. With neither set, the API is closed (401), unless hook_insecure says the setup is a toy.
    operator_token: SecretStr | None = None
    operator_token_file: Path | None = None
    viewer_token: SecretStr | None = None
    viewer_token_file: Path | None = None
    # The media-server credential of livedub's own readers (live/<id>/in) and publishers
    # (live/<id>/out): nobody else may read the input or publish the output.
    internal_key: SecretStr | None = None
    internal_key_file: Path | None = None
    # Any publish to live/<id>/in starts a job, without a stream key: local rehearsal only.
    open_publishing: bool = False

    media_server: MediaServerKind = "nginx-rtmp"
    # Base RTMP URL of the media server, as the workers reach it.
    rtmp_url: str = "rtmp://127.0.0.1:1935"
    # What the dashboard shows users: the RTMP base they can reach, and an HLS preview URL with {id}
    # (MediaMTX: http://HOST:8888/live/{id}/out/index.m3u8).
    public_rtmp_url: str | None = None
    hls_url_template: str | None = None
    # Where livedub's publish pool runs: only these addresses may publish live/<id>/out (nginx-rtmp).
    publisher_networks: list[str] = ["127.0.0.0/8", "::1/128"]
    store_dir: Path = Path(".livedub/store")
    # Where segments live for every host: file:///path, s3://KEY:SECRET@HOST:PORT/BUCKET/PREFIX, or
    # s3+http://... (see worker/core/store_url.py). Empty: the directory store_dir. With an object store,
    # store_dir is this host's scratch for the files ffmpeg reads and writes.
    store_url: str = ""
    store_access_key: str | None = None
    store_secret_key: SecretStr | None = None
    store_ttl_s: int = 3600
    # A published segment's files are removed this long after its piece went out.
    keep_published_s: float = Field(30.0, ge=0)
    # A stream whose files on its ingest host's disk pass this is stopped (MB; 0: no limit).
    max_stream_disk_mb: int = Field(2048, ge=0)
    # A new stream does not start while the files of all streams on this host's store pass this (MB; 0: none).
    max_total_disk_mb: int = Field(51200, ge=0)

    segment_seconds: float = Field(6.0, gt=0.5, le=60)
    heartbeat_interval_s: float = Field(2.0, gt=0)
    heartbeat_ttl_s: float = Field(10.0, gt=0)
    # A job nobody picked up within this time fails ("no ingest worker").
    start_timeout_s: float = Field(30.0, gt=0)
    # How often the API fails streams whose job stopped heartbeating (0: never; tests call it).
    reconcile_interval_s: float = Field(2.0, ge=0)
    # After a stop hook, how long the reader may take to see the end before it is stopped.
    drain_timeout_s: float = Field(15.0, gt=0)
    # A publisher that drops and re-publishes the same id within this time after its input ended
    # resumes the stream (same job, numbering goes on, the output stays published).
    republish_grace_s: float = Field(8.0, ge=0, le=60)
    # How long the nginx-rtmp publish hook holds its answer waiting for the job's reader.
    reader_wait_s: float = Field(5.0, ge=0)
    # ffmpeg read timeout: a publisher that stops sending without closing.
    read_timeout_s: float = Field(10.0, gt=0)
    max_hook_body_bytes: int = 16 * 1024
    # Streams dubbed at once (starting, live or draining); a publish over it is refused. 0: no limit.
    max_live_streams: int = Field(16, ge=0)
    # An input that sends no keyframe for this many segment lengths is stopped (livedub cuts at keyframes;
    # without them one segment would grow until the stream ends).
    max_keyframe_gap_segments: float = Field(2.0, ge=1.0, le=10.0)
    # An input over this bitrate (kbit/s, per segment) is stopped. 0: no limit.
    max_input_kbps: int = Field(20000, ge=0)
    record_ttl_s: int = 24 * 3600

    # Pipeline. The output runs segment_seconds + latency_budget_s behind the input.
    latency_budget_s: float = Field(2.0, ge=0.2, le=60)
    # Feed each piece this long before the publisher needs it.
    publish_margin_s: float = Field(0.3, ge=0, le=5)
    source_language: str = "en"
    target_language: str = "es"
    voice_profile: str = "default"
    max_stretch: float = Field(1.3, ge=1.0, le=2.0)
    mix_mode: Literal["duck", "replace"] = "duck"
    duck_db: float = Field(12.0, ge=0, le=60)
    audio_bitrate: str = "128k"
    # Speech mode: units follow the speaker; video pieces are cut at every keyframe (piece_seconds at
    # least), the output runs latency_s behind, a dub starts at most max_lag_s after its unit's start.
    segmentation: Segmentation = Segmentation.SPEECH
    latency_s: float = Field(6.0, ge=3.0, le=30)
    piece_seconds: float = Field(1.0, gt=0.5, le=10)
    max_lag_s: float = Field(1.5, ge=0, le=10)
    speech_max_stretch: float = Field(1.25, ge=1.0, le=2.0)
    min_unit_s: float = Field(1.0, ge=0.2, le=10)
    min_pause_s: float = Field(0.2, ge=0.1, le=2)
    sts_estimate_s: float = Field(1.2, ge=0.1, le=20)  # the STS round trip a unit's length allows for
    # ... at most: less (longer units) while a stream's last round trips were shorter, unless this is false.
    sts_estimate_adaptive: bool = True
    # A unit cut inside speech is sent with this much of the speech after its cut (at most what was heard),
    # to an STS service that keeps a unit's own words (``speech_bounds``): the word the cut went through is
    # heard whole (worker/sts/bounds.py). 0: units are sent as cut.
    speech_lookahead_s: float = Field(0.5, ge=0, le=1.0)

    # The STS service.
    sts_url: str = "http://127.0.0.1:8765"
    sts_token: SecretStr | None = None
    sts_token_file: Path | None = None
    sts_namespace: str = "/"

    ffmpeg_bin: str = "ffmpeg"
    ffprobe_bin: str = "ffprobe"

    @field_validator("publisher_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # ValueError: "... does not appear to be an IPv4 or IPv6 network"
        return value

    @model_validator(mode="after")
    def _read_secret_file(self) -> Settings:
        if self.hook_secret is None and self.hook_secret_file is not None:
            self.hook_secret = SecretStr(self.hook_secret_file.read_text().strip())
        if self.sts_token is None and self.sts_token_file is not None:
            self.sts_token = SecretStr(self.sts_token_file.read_text().strip())
        for name in ("operator_token", "viewer_token", "internal_key"):
            path = getattr(self, f"{name}_file")
            if getattr(self, name) is None and path is not None:
                setattr(self, name, SecretStr(path.read_text().strip()))
        for name in SECRETS:
            check_secret(name, getattr(self, name))
        return self

    @staticmethod
    def _value(secret: SecretStr | None) -> str | None:
        return secret.get_secret_value() or None if secret is not None else None

    def internal_key_value(self) -> str | None:
        return self._value(self.internal_key)

    def api_tokens(self) -> dict[str, str]:
        """Role ("operator", "viewer") -> token, for the ones set."""
        tokens = {"operator": self._value(self.operator_token), "viewer": self._value(self.viewer_token)}
        return {role: t for role, t in tokens.items() if t}

    def sts_token_value(self) -> str | None:
        return self.sts_token.get_secret_value() if self.sts_token is not None else None

    def require_hook_secret(self) -> str | None:
        """The hook secret, or None when the deployment is explicitly insecure."""
        if self.hook_secret is not None and self.hook_secret.get_secret_value():
            return self.hook_secret.get_secret_value()
        if self.hook_insecure:
            return None
        raise RuntimeError(
            "no hook secret: set LIVEDUB_HOOK_SECRET or LIVEDUB_HOOK_SECRET_FILE "
            "(or LIVEDUB_HOOK_INSECURE=true for a throwaway local setup)"
        )


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides winning."""
    return Settings(**overrides)  # type: ignore[arg-type]
