"""One fragment's work, run on an engine thread: deadline check, engine call, result or failure code."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from worker.sts.audio import AudioError
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


def process(engine: Engine, session: StreamSession, work: Work) -> FragmentProcessed:
    """Run on an engine thread. A fragment that waited past its stream's timeout_ms is not worth
    dubbing any more: it fails with TIMEOUT (retryable) instead."""
    frag = work.fragment
    base: dict[str, Any] = {"fragment_id": frag.fragment_id, "stream_id": frag.stream_id,
                            "sequence_number": frag.sequence_number}
    started = time.monotonic()
    waited_ms = (started - work.accepted_at) * 1000
    if waited_ms > session.timeout_ms:
        return FragmentProcessed(**base, status="failed", processing_time_ms=waited_ms, error=ErrorInfo(
            code="TIMEOUT", message=f"waited {waited_ms:.0f} ms in the queue, over timeout_ms", stage="queue",
            retryable=True))
    try:
        delay = float(frag.metadata.get("echo_delay_ms", 0) or 0)
        res = engine.process(frag.audio, work.raw, session.config, delay_ms=delay, sequence=frag.sequence_number)
    except AudioError as exc:
        return _failed(base, started, exc.code, str(exc), "decode" if exc.code == "DECODE_ERROR" else "")
    except Exception as exc:
        log.exception("fragment %s failed", frag.fragment_id)
        return _failed(base, started, "ENGINE_ERROR", f"{type(exc).__name__}: {exc}", "engine", True)
    audio = encode_audio(res.audio, res.format, res.sample_rate_hz, res.channels, res.duration_ms, work.binary)
    return FragmentProcessed(
        **base, status=res.status, dubbed_audio=audio, transcript=res.transcript,
        translated_text=res.translated_text, processing_time_ms=(time.monotonic() - started) * 1000,
        stage_timings=res.timings, metadata=_model_names(engine))


def _failed(base: dict[str, Any], started: float, code: str, message: str, stage: str,
            retryable: bool = False) -> FragmentProcessed:
    return FragmentProcessed(**base, status="failed", processing_time_ms=(time.monotonic() - started) * 1000,
                             error=ErrorInfo(code=code, message=message, stage=stage, retryable=retryable))


def _model_names(engine: Engine) -> dict[str, str]:
    models = engine.health()["models"]
    return {"asr_model": models["asr"]["name"], "translation_model": models["mt"]["name"],
            "tts_model": models["tts"]["name"]}
