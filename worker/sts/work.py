"""One fragment's work, run on an engine thread: deadline check, engine call, result or failure code."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from worker.sts.audio import AudioError, to_m4a
from worker.sts.beam import Room
from worker.sts.bounds import LastUnits
from worker.sts.context import SpeechContext, filled
from worker.sts.engines import Engine
from worker.sts.protocol import ErrorInfo, FragmentData, FragmentProcessed, encode_audio
from worker.sts.sessions import StreamSession

log = logging.getLogger(__name__)


@dataclass
class Work:
    fragment: FragmentData
    raw: bytes
    accepted_at: float
    binary: bool
    due_at: float  # when its client stops waiting (monotonic, from wait_limit_ms): the queue serves the urgent first


def wait_limit_ms(timeout_ms: int, metadata: dict[str, Any]) -> float:
    """How long a fragment may wait in the queue: the stream's timeout_ms, or less where the client says
    it stops waiting sooner (livedub's ``budget_ms``): a late answer would be thrown away, and computing
    it would make the fragments behind it late too. Pure."""
    budget = metadata.get("budget_ms")
    if isinstance(budget, int | float) and not isinstance(budget, bool) and budget > 0:
        return min(float(timeout_ms), float(budget))
    return float(timeout_ms)


def process(engine: Engine, session: StreamSession, work: Work, waiting: int = 0,
            last: LastUnits | None = None) -> FragmentProcessed:
    """Run on an engine thread. A fragment that waited past its ``due_at`` (its stream's timeout_ms, or
    the client's budget) is not worth dubbing any more: it fails with TIMEOUT (retryable) instead.
    ``waiting``: the fragments queued behind it (the engine decodes with its wide beam only when there are
    none and the client waits long enough).
    ``last``: the streams' last units, for the context a unit was sent without (worker/sts/bounds.py)."""
    frag = work.fragment
    base: dict[str, Any] = {"fragment_id": frag.fragment_id, "stream_id": frag.stream_id,
                            "sequence_number": frag.sequence_number}
    started = time.monotonic()
    if started > work.due_at:
        waited_ms = (started - work.accepted_at) * 1000
        why = f"waited {waited_ms:.0f} ms in the queue, past its timeout_ms or budget_ms"
        return FragmentProcessed(**base, status="failed", processing_time_ms=round(waited_ms),
                                 error=ErrorInfo(code="TIMEOUT", message=why, retryable=True))
    try:
        delay = float(frag.metadata.get("echo_delay_ms", 0) or 0)
        ctx = SpeechContext.from_metadata(frag.metadata)
        if ctx is not None and last is not None and engine.speech_bounds:
            ctx = filled(ctx, last.before(frag.stream_id, frag.sequence_number))
        res = engine.process(frag.audio, work.raw, session.config, delay_ms=delay, sequence=frag.sequence_number,
                             context=ctx, room=Room(remaining_ms=(work.due_at - started) * 1000, waiting=waiting))
        if ctx is not None and last is not None and engine.speech_bounds:
            last.note(frag.stream_id, frag.sequence_number, res.transcript, ctx.bounds,
                      None if res.spoken_until_ms is None else res.spoken_until_ms / 1000)
        data, fmt, rate, channels = res.audio, res.format, res.sample_rate_hz, res.channels
        if frag.audio.format == "m4a" and fmt != "m4a":  # answer in the client's format (v1.0 reads MP4)
            data, fmt = to_m4a(data, fmt, rate, channels), "m4a"
    except AudioError as exc:  # the input could not be decoded: the ASR stage's input (v1.0's stages)
        return _failed(base, started, exc.code, str(exc), "asr" if exc.code == "DECODE_ERROR" else None)
    except Exception as exc:
        log.exception("fragment %s failed", frag.fragment_id)
        return _failed(base, started, "MODEL_ERROR", f"{type(exc).__name__}: {exc}", None, True)
    audio = encode_audio(data, fmt, rate, channels, res.duration_ms, work.binary)
    original = frag.audio.duration_ms
    metadata: dict[str, Any] = {**_model_names(engine), "original_duration_ms": round(original),
                                "dubbed_duration_ms": round(res.duration_ms),
                                "duration_variance_percent": round((res.duration_ms - original) / original * 100, 2)
                                if original else 0.0,
                                "speed_ratio": round(res.duration_ms / original, 4) if original else 1.0}
    if res.spoken_until_ms is not None:
        metadata["spoken_until_ms"] = res.spoken_until_ms
    if ctx is not None and ctx.bounds.skip_s > 0:  # what it dropped as the unit before's word
        metadata["skip_ms"] = round(ctx.bounds.skip_s * 1000)
    return FragmentProcessed(
        **base, status=res.status, dubbed_audio=audio, transcript=res.transcript,
        translated_text=res.translated_text, processing_time_ms=round((time.monotonic() - started) * 1000),
        stage_timings=res.timings, metadata=metadata)


def _failed(base: dict[str, Any], started: float, code: str, message: str, stage: Literal["asr"] | None,
            retryable: bool = False) -> FragmentProcessed:
    return FragmentProcessed(**base, status="failed", processing_time_ms=round((time.monotonic() - started) * 1000),
                             error=ErrorInfo(code=code, message=message, stage=stage, retryable=retryable))


def _model_names(engine: Engine) -> dict[str, str]:
    models = engine.health()["models"]
    return {"asr_model": models["asr"]["name"], "translation_model": models["mt"]["name"],
            "tts_model": models["tts"]["name"]}
