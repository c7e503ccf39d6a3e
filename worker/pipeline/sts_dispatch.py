"""STS-dispatch: send a segment's original audio to the STS service and keep what comes back.

No step raises for a segment's own trouble: a failure becomes ``fallback`` on the result, and the
publisher then uses the segment's fallback piece.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pybreaker
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from worker.core.messages import DubAudio, DubbedSegment, DubbedUnit, DubRequest, SegmentWork, UnitWork
from worker.core.segments import Reason, ReasonCode, SegmentStatus
from worker.core.settings import Settings
from worker.core.timing import AUDIO_RATE
from worker.pipeline.outcome import give_up
from worker.pipeline.sts_fragment import DUB_FORMATS, fragment_for
from worker.state.registry import StreamRegistry
from worker.state.store import SegmentStore, StoreError, sibling
from worker.state.units import UnitBook
from worker.sts.client import StsClient, StsError
from worker.sts.protocol import (
    V1_MAX_CHUNK_MS,
    Backpressure,
    FragmentProcessed,
    StageTimings,
    StreamConfig,
    StreamInit,
)

# Time kept back from the deadline for what follows the answer: a segment's collect and remux. A unit's
# deadline is its piece's seal, which keeps the remux's time back already; what follows its answer is
# collect and placement (p10/p50/p90 0.11/0.16/0.33 s on three streams). An answer that comes too late
# for it costs one collect that finds the timeline sealed (`late`); one given up too early costs a dub.
CHAIN_RESERVE_S = 0.6
UNIT_RESERVE_S = 0.1
UNREACHABLE = frozenset({"UNREACHABLE", "NAMESPACE_MISMATCH", "UNAUTHORIZED"})
CIRCUIT_OPEN = "CIRCUIT_OPEN"


def reserve_s(work: DubRequest) -> float:
    """How long before its deadline the client stops waiting for a fragment's answer."""
    return UNIT_RESERVE_S if isinstance(work, UnitWork) else CHAIN_RESERVE_S


@dataclass(frozen=True)
class RoundTrip:
    result: FragmentProcessed
    backpressure: list[Backpressure]


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, StsError) and exc.retryable


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

    def client_for(self, work: DubRequest, chunk_ms: int, timeout_s: float = 5.0) -> StsClient:
        with self.lock:
            client = self.clients.get(work.stream_id)
            if client is not None and client.connected:
                return client
            if client is not None:  # the service dropped it: release its transport before a new one
                client.close()
            try:
                client = self.breaker.call(self._connect, max(min(timeout_s, 5.0), 0.2))
            except pybreaker.CircuitBreakerError as exc:
                raise StsError(CIRCUIT_OPEN, f"the STS service failed {self.breaker.fail_max} connects in a row;"
                               f" retrying after {self.breaker.reset_timeout:g}s") from exc
            client.init_stream(StreamInit(stream_id=work.stream_id, worker_id=f"sts-{uuid.uuid4().hex[:6]}",
                                          config=StreamConfig(source_language=work.source_language,
                                                              target_language=work.target_language,
                                                              voice_profile=work.voice_profile,
                                                              chunk_duration_ms=min(chunk_ms, V1_MAX_CHUNK_MS),
                                                              sample_rate_hz=AUDIO_RATE, channels=2, format="m4a"),
                                          max_inflight=3, timeout_ms=8000))
            self.clients[work.stream_id] = client
            return client

    def drop(self, stream_id: str) -> None:
        with self.lock:
            client = self.clients.pop(stream_id, None)
        if client is not None:
            client.close()

    def round_trip(self, work: DubRequest, audio: bytes, clock: Callable[[], float] = time.time) -> RoundTrip:
        """Send one fragment and wait for its result until the chain's share of the deadline; retries
        transient errors. Raises StsError or TimeoutError; any other error drops the connection."""
        stop_at = work.deadline_at - reserve_s(work)
        fid = work.fragment_id
        chunk_ms = int(work.audio_samples * 1000 / AUDIO_RATE)

        @retry(retry=retry_if_exception(_transient), wait=wait_exponential(multiplier=0.1, max=1.0),
               stop=stop_after_delay(max(stop_at - clock() - 0.2, 0.1)), reraise=True)
        def once() -> RoundTrip:
            client = self.client_for(work, chunk_ms, stop_at - clock())
            frag = fragment_for(work, fid, audio, client.capabilities(work.stream_id), chunk_ms,
                                self.settings.ffmpeg_bin, clock, max(stop_at - clock(), 0.05))
            try:
                client.send_fragment(frag)
                result = client.wait_processed(fid, max(stop_at - clock(), 0.05))
            except (StsError, TimeoutError):
                client.abandon(fid)  # an answer after the deadline is dropped, not kept
                if not client.connected:
                    self.drop(work.stream_id)
                raise
            return RoundTrip(result, client.drain_backpressure())

        try:
            return once()
        except (StsError, TimeoutError):
            raise
        except Exception:
            self.drop(work.stream_id)
            raise


def reason_for(exc: BaseException) -> Reason:
    """Why a segment falls back, from what its round trip raised."""
    if isinstance(exc, TimeoutError):
        return Reason(ReasonCode.STS_TIMEOUT, str(exc))
    if isinstance(exc, StsError):
        if exc.code == CIRCUIT_OPEN:
            return Reason(ReasonCode.CIRCUIT_OPEN, str(exc))
        code = ReasonCode.STS_UNREACHABLE if exc.code in UNREACHABLE else ReasonCode.STS_FAILED
        return Reason(code, str(exc))
    return Reason(ReasonCode.STS_UNREACHABLE, f"{type(exc).__name__}: {exc}")


@dataclass
class Answer:
    """What one round trip gave: the dub stored (or None: nothing to say), or why it falls back."""

    timings_ms: dict[str, float]
    transcript: str = ""
    translated_text: str = ""
    dub: DubAudio | None = None
    fallback: Reason | None = None
    spoken_until_s: float | None = None  # a unit sent with the audio after it: where its last word ends

    def fields(self) -> dict[str, object]:
        if not self.timings_ms:
            return {}
        out: dict[str, object] = {"transcript": self.transcript, "translated_text": self.translated_text,
                                  "timings_ms": self.timings_ms}
        if self.spoken_until_s is not None:
            out["spoken_until_s"] = self.spoken_until_s
        return out


def spoken_until(work: DubRequest, metadata: dict[str, object] | None) -> float | None:
    """Where the unit's last word ends on the timeline, from the server's ``spoken_until_ms`` (seconds from
    the fragment's start), if it is a number inside the audio sent; else None. Pure."""
    ms = (metadata or {}).get("spoken_until_ms")
    most = (work.audio_samples + work.look_samples) * 1000 / AUDIO_RATE
    if not work.look_samples or isinstance(ms, bool) or not isinstance(ms, int | float) or not 0 <= ms <= most:
        return None
    return round(work.start_s + ms / 1000, 6)


def ask(work: DubRequest, store: SegmentStore, registry: StreamRegistry, pool: StsPool, name: str,
        clock: Callable[[], float] = time.time) -> Answer:
    """One round trip for a segment or a unit (``name``: its file names), the dub stored. Never raises
    for the work's own trouble: the answer carries the reason."""
    started = clock()
    budget = work.deadline_at - started - reserve_s(work)
    if budget <= 0:
        return Answer({}, fallback=Reason(ReasonCode.STS_TIMEOUT, f"no time left before the deadline ({budget:.2f}s)"))
    try:
        trip = pool.round_trip(work, store.read(work.orig_key), clock)  # the message carries it whole
    except Exception as exc:  # noqa: BLE001 - the work falls back; the stream goes on
        reason = reason_for(exc)
        if reason.code is ReasonCode.CIRCUIT_OPEN:
            registry.metrics.count("livedub_sts_circuit_open_total")
        return Answer({}, fallback=reason)
    res = trip.result
    st = res.stage_timings or StageTimings()
    timings = {"sts_rtt": (clock() - started) * 1000, "sts_compute": float(res.processing_time_ms),
               "asr": float(st.asr_ms), "mt": float(st.translation_ms), "tts": float(st.tts_ms)}
    for stage in ("sts_rtt", "asr", "mt", "tts"):
        if timings[stage] > 0:
            registry.metrics.observe("livedub_stage_duration_seconds", timings[stage] / 1000, stage=stage)
    for bp in trip.backpressure:
        registry.metrics.count("livedub_sts_backpressure_total", action=bp.action)
    out = Answer(timings, res.transcript or "", res.translated_text or "",
                 spoken_until_s=spoken_until(work, res.metadata))
    if res.status == "failed" or res.dubbed_audio is None:
        out.fallback = Reason(ReasonCode.STS_FAILED, res.error.code if res.error else "no audio")
        return out
    if res.dubbed_audio.format not in DUB_FORMATS:
        out.fallback = Reason(ReasonCode.STS_FAILED, f"dubbed audio in {res.dubbed_audio.format!r}, which livedub "
                                                     f"does not read (it reads {', '.join(DUB_FORMATS)})")
        return out
    audio = res.dubbed_audio.raw()
    if audio:
        path = store.work_path(sibling(work.orig_key, f"dub_{name}.{DUB_FORMATS[res.dubbed_audio.format]}"))
        path.write_bytes(audio)
        try:
            key = store.put(path)
        except StoreError as exc:
            out.fallback = Reason(ReasonCode.STS_FAILED, f"could not store the dub: {exc}")
            return out
        finally:
            store.discard(path)
        out.dub = DubAudio(key=key, format=res.dubbed_audio.format,
                           sample_rate_hz=res.dubbed_audio.sample_rate_hz, channels=res.dubbed_audio.channels)
    return out


def dub_segment(work: SegmentWork, store: SegmentStore, registry: StreamRegistry, pool: StsPool,
                clock: Callable[[], float] = time.time) -> DubbedSegment:
    """The STS-dispatch stage (fixed mode): one round trip, the dub stored, the segment's record updated."""
    ans = ask(work, store, registry, pool, f"{work.sequence:05d}", clock)
    out = DubbedSegment(work=work, timings_ms=ans.timings_ms, transcript=ans.transcript,
                        translated_text=ans.translated_text, dub=ans.dub)
    if ans.fallback is not None:
        return out.model_copy(update={"fallback": give_up(work, registry, ans.fallback, **ans.fields())})
    registry.update_segment(work.stream_id, work.sequence, **ans.fields())
    return out


def dub_unit(work: UnitWork, store: SegmentStore, registry: StreamRegistry, units: UnitBook, pool: StsPool,
             clock: Callable[[], float] = time.time) -> DubbedUnit:
    """The STS-dispatch stage (speech mode): one round trip per unit; its record gets the texts."""
    ans = ask(work, store, registry, pool, f"u{work.sequence:05d}", clock)
    out = DubbedUnit(work=work, timings_ms=ans.timings_ms, transcript=ans.transcript,
                     translated_text=ans.translated_text, dub=ans.dub, fallback=ans.fallback)
    if ans.fallback is not None:
        units.settle(work.stream_id, work.sequence, SegmentStatus.FALLBACK, ans.fallback, **ans.fields())
    else:
        units.update(work.stream_id, work.sequence, **ans.fields())
    return out
