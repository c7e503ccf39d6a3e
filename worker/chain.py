"""The per-segment chain: STS-dispatch -> collect-dubbed-audio -> remux. Plain functions.

No step raises for a segment's own trouble: a failure becomes ``fallback_reason`` on the message,
and the publisher then uses the segment's fallback piece.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pybreaker
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from worker import metrics
from worker.models import ChainMsg
from worker.pieces import FRAME_BYTES, fit_args, piece_args
from worker.prepare import MediaError, run_media
from worker.registry import StreamRegistry
from worker.settings import Settings
from worker.store import LocalSegmentStore
from worker.sts.audio import wav_params
from worker.sts.client import StsClient, StsError
from worker.sts.protocol import AudioIn, FragmentData, StreamConfig, StreamInit
from worker.timing import AUDIO_RATE, fit_plan

log = logging.getLogger(__name__)
# Time kept back from the STS deadline for collect + remux.
CHAIN_RESERVE_S = 0.6
EXT = {"wav": "wav", "m4a": "m4a", "pcm_s16le": "pcm"}


class StsPool:
    """One STS connection per stream per worker process, initialised with stream:init once.

    Connections go through a circuit breaker: after ``fail_max`` failed connects in a row it opens,
    and segments fall back at once (``circuit_open``) instead of each waiting out its deadline. After
    ``reset_timeout`` (shorter than a segment) one connect is tried again, so dubbing resumes by
    itself within a segment of the service coming back."""

    def __init__(self, settings: Settings, factory: Callable[..., StsClient] = StsClient,
                 fail_max: int = 2, reset_timeout_s: float = 4.0) -> None:
        self.settings = settings
        self.factory = factory
        self.clients: dict[str, StsClient] = {}
        self.lock = threading.Lock()
        self.breaker = pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=reset_timeout_s,
                                                name=f"sts:{settings.sts_url}")

    def _connect(self, timeout_s: float) -> StsClient:
        return self.factory(self.settings.sts_url, token=self.settings.sts_token_value(),
                            namespace=self.settings.sts_namespace, connect_timeout_s=timeout_s).connect()

    def client_for(self, msg: ChainMsg, chunk_ms: int, timeout_s: float = 5.0) -> StsClient:
        with self.lock:
            client = self.clients.get(msg.stream_id)
            if client is not None and client.connected:
                return client
            try:
                client = self.breaker.call(self._connect, max(min(timeout_s, 5.0), 0.2))
            except pybreaker.CircuitBreakerError as exc:
                raise StsError("CIRCUIT_OPEN", f"the STS service failed {self.breaker.fail_max} connects in a row;"
                               f" retrying after {self.breaker.reset_timeout:g}s") from exc
            client.init_stream(StreamInit(stream_id=msg.stream_id, worker_id=f"sts-{uuid.uuid4().hex[:6]}",
                                          config=StreamConfig(source_language=msg.source_language,
                                                              target_language=msg.target_language,
                                                              voice_profile=msg.voice_profile,
                                                              chunk_duration_ms=chunk_ms, sample_rate_hz=AUDIO_RATE,
                                                              channels=2, format="pcm_s16le")))
            self.clients[msg.stream_id] = client
            return client

    def drop(self, stream_id: str) -> None:
        with self.lock:
            client = self.clients.pop(stream_id, None)
        if client is not None:
            client.close()


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, StsError) and exc.retryable


def dispatch(msg: ChainMsg, store: LocalSegmentStore, registry: StreamRegistry, pool: StsPool,
             clock: Callable[[], float] = time.time) -> ChainMsg:
    """Send the segment's audio to the STS service; wait for its result up to the deadline."""
    started = clock()
    budget = msg.deadline_at - started - CHAIN_RESERVE_S
    if budget <= 0:
        return _fallback(msg, registry, f"sts_timeout: no time left before the deadline ({budget:.2f}s)")
    raw = store.path(msg.orig_key).read_bytes()
    fid = f"{msg.stream_id}-{msg.job_id[:8]}-{msg.sequence}"
    chunk_ms = int(msg.audio_samples * 1000 / AUDIO_RATE)

    @retry(retry=retry_if_exception(_transient), wait=wait_exponential(multiplier=0.1, max=1.0),
           stop=stop_after_delay(max(budget - 0.2, 0.1)), reraise=True)
    def send_and_wait() -> object:
        client = pool.client_for(msg, chunk_ms, msg.deadline_at - CHAIN_RESERVE_S - clock())
        try:
            client.send_fragment(FragmentData(
                fragment_id=fid, stream_id=msg.stream_id, sequence_number=msg.sequence, timestamp=msg.start_s,
                audio=AudioIn(format="pcm_s16le", sample_rate_hz=AUDIO_RATE, channels=2, duration_ms=chunk_ms,
                              data=raw), metadata={"pts_ns": int(msg.start_s * 1e9)}))
            return client.wait_processed(fid, max(msg.deadline_at - CHAIN_RESERVE_S - clock(), 0.05))
        except (StsError, TimeoutError):
            if not client.connected:
                pool.drop(msg.stream_id)
            raise

    try:
        res = send_and_wait()
    except TimeoutError as exc:
        return _fallback(msg, registry, f"sts_timeout: {exc}")
    except StsError as exc:
        if exc.code == "CIRCUIT_OPEN":
            metrics.count(registry.r, "livedub_sts_circuit_open_total")
            return _fallback(msg, registry, f"circuit_open: {exc}")
        code = "sts_unreachable" if exc.code in ("UNREACHABLE", "NAMESPACE_MISMATCH", "UNAUTHORIZED") else "sts_failed"
        return _fallback(msg, registry, f"{code}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a segment falls back; the stream goes on
        pool.drop(msg.stream_id)
        return _fallback(msg, registry, f"sts_unreachable: {type(exc).__name__}: {exc}")
    from worker.sts.protocol import FragmentProcessed

    assert isinstance(res, FragmentProcessed)
    rtt_ms = (clock() - started) * 1000
    timings = {"sts_rtt": rtt_ms, "sts_compute": res.processing_time_ms, "asr": res.stage_timings.asr_ms,
               "mt": res.stage_timings.translation_ms, "tts": res.stage_timings.tts_ms}
    update = {"transcript": res.transcript, "translated_text": res.translated_text,
              "timings_ms": msg.timings_ms | timings}
    for stage, ms in (("sts_rtt", rtt_ms), ("asr", timings["asr"]), ("mt", timings["mt"]), ("tts", timings["tts"])):
        if ms > 0:
            metrics.observe(registry.r, "livedub_stage_duration_seconds", ms / 1000, stage=stage)
    client = pool.clients.get(msg.stream_id)
    for bp in client.drain_backpressure() if client is not None else []:
        metrics.count(registry.r, "livedub_sts_backpressure_total", action=bp.action)
    if res.status == "failed" or res.dubbed_audio is None:
        registry.update_segment(msg.stream_id, msg.sequence, **update)
        code = res.error.code if res.error else "no audio"
        return _fallback(msg, registry, f"sts_failed: {code}")
    out = msg.model_copy(update={"transcript": res.transcript, "translated_text": res.translated_text,
                                 "timings_ms": update["timings_ms"]})
    audio = res.dubbed_audio.raw()
    if audio:
        path = store.path(msg.orig_key).with_name(f"dub_{msg.sequence:05d}.{EXT.get(res.dubbed_audio.format, 'bin')}")
        path.write_bytes(audio)
        out.dub_key, out.dub_format = store.key_of(path), res.dubbed_audio.format
        out.dub_rate, out.dub_channels = res.dubbed_audio.sample_rate_hz, res.dubbed_audio.channels
    registry.update_segment(msg.stream_id, msg.sequence, **update)
    return out


def _fallback(msg: ChainMsg, registry: StreamRegistry, reason: str) -> ChainMsg:
    log.info("%s #%d falls back: %s", msg.stream_id, msg.sequence, reason)
    registry.update_segment(msg.stream_id, msg.sequence, dub="fallback", dub_reason=reason)
    return msg.model_copy(update={"fallback_reason": reason})


def dub_samples_48k(path: Path, fmt: str, rate: int, channels: int, ffprobe: str) -> int:
    """Length of the dubbed audio in 48 kHz samples."""
    raw_len = path.stat().st_size
    if fmt == "pcm_s16le":
        frames = raw_len // (2 * channels)
    elif fmt == "wav":
        rate, _, frames = wav_params(path.read_bytes())
    else:
        seconds = float(run_media([ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                                   str(path)]).strip() or 0)
        return int(seconds * AUDIO_RATE)
    return frames * AUDIO_RATE // rate


def collect(msg: ChainMsg, store: LocalSegmentStore, registry: StreamRegistry, settings: Settings,
            clock: Callable[[], float] = time.time) -> ChainMsg:
    """Fit the dub to the segment's exact slot and mix it over the original audio."""
    if msg.fallback_reason or _stale(msg, clock()):
        return msg
    started = clock()
    orig = store.path(msg.orig_key)
    out = orig.with_name(f"fit_{msg.sequence:05d}.pcm")
    dub = store.path(msg.dub_key) if msg.dub_key else None
    try:
        ratio, trimmed = 1.0, 0
        if dub is not None:
            plan = fit_plan(dub_samples_48k(dub, msg.dub_format, msg.dub_rate, msg.dub_channels,
                                            settings.ffprobe_bin), msg.audio_samples, settings.max_stretch)
            ratio, trimmed = plan.ratio, plan.trim
        run_media(fit_args(settings.ffmpeg_bin, dub, msg.dub_format, msg.dub_rate, msg.dub_channels, orig,
                           msg.audio_samples, ratio, settings.mix_mode, settings.duck_db, out))
        if out.stat().st_size != msg.audio_samples * FRAME_BYTES:
            raise MediaError(f"fitted audio is {out.stat().st_size // FRAME_BYTES} samples, "
                             f"not {msg.audio_samples}")
    except (MediaError, OSError, ValueError) as exc:
        return _fallback(msg, registry, f"collect_failed: {exc}")
    metrics.observe(registry.r, "livedub_stage_duration_seconds", clock() - started, stage="collect")
    registry.update_segment(msg.stream_id, msg.sequence, stretch_ratio=round(ratio, 4),
                            trimmed_s=round(trimmed / AUDIO_RATE, 3),
                            timings_ms=msg.timings_ms | {"collect": (clock() - started) * 1000})
    return msg.model_copy(update={"timings_ms": msg.timings_ms | {"collect": (clock() - started) * 1000},
                                  "dub_key": store.key_of(out), "dub_format": "fit"})


def remux(msg: ChainMsg, store: LocalSegmentStore, registry: StreamRegistry, settings: Settings,
          clock: Callable[[], float] = time.time) -> ChainMsg:
    """The dubbed piece: original video copied, fitted audio encoded to AAC, on the AAC-frame grid."""
    if msg.fallback_reason or _stale(msg, clock()):
        return msg
    started = clock()
    fit = store.path(msg.dub_key or "")
    piece = fit.with_name(f"piece_{msg.sequence:05d}.ts")
    try:
        run_media(piece_args(settings.ffmpeg_bin, store.path(msg.segment_key), fit, msg.audio_start_sample, piece,
                             settings.audio_bitrate, msg.ts_offset_s))
    except (MediaError, OSError) as exc:
        return _fallback(msg, registry, f"remux_failed: {exc}")
    timings = msg.timings_ms | {"remux": (clock() - started) * 1000}
    metrics.observe(registry.r, "livedub_stage_duration_seconds", clock() - started, stage="remux")
    registry.update_segment(msg.stream_id, msg.sequence, dub="ready", piece=store.key_of(piece), timings_ms=timings,
                            ready_at=clock())
    return msg.model_copy(update={"timings_ms": timings})


def _stale(msg: ChainMsg, now: float) -> bool:
    """Past its deadline the publisher has put out the segment's fallback: a late or redelivered task
    (its worker died) does no work and leaves the record as the publisher wrote it."""
    return now > msg.deadline_at
