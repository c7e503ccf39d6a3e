"""collect-dubbed-audio: fit the dub to its segment's exact slot and mix it over the original audio."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from worker.core.messages import DubAudio, DubbedSegment, FittedSegment
from worker.core.segments import Reason, ReasonCode
from worker.core.settings import Settings
from worker.core.timing import AUDIO_RATE, FRAME_BYTES, fit_plan
from worker.media.commands import duration_args, fit_args
from worker.media.run import MediaError, run_media
from worker.media.wav import wav_params
from worker.pipeline.outcome import expired, give_up
from worker.state.registry import StreamRegistry
from worker.state.store import SegmentStore, StoreError, sibling


def dub_samples_48k(path: Path, dub: DubAudio, ffprobe: str) -> int:
    """Length of the dubbed audio in 48 kHz samples."""
    if dub.format in ("pcm_s16le", "pcm_f32le"):
        width = 2 if dub.format == "pcm_s16le" else 4
        return path.stat().st_size // (width * dub.channels) * AUDIO_RATE // dub.sample_rate_hz
    if dub.format == "wav":
        rate, _, frames = wav_params(path)
        return frames * AUDIO_RATE // rate
    seconds = float(run_media(duration_args(ffprobe, path, dub_demuxer(dub, path))).strip() or 0)
    return int(seconds * AUDIO_RATE)


def _fetch(store: SegmentStore, dub: DubAudio | None) -> AbstractContextManager[Path | None]:
    return store.fetch(dub.key) if dub is not None else nullcontext(None)


def dub_demuxer(dub: DubAudio | None, path: Path | None) -> str:
    """The dub's format for its demuxer; ``m4a`` that is really raw ADTS AAC (as seed workers send it,
    and an echo server returns it) is read as ADTS."""
    if dub is None or path is None:
        return "wav"
    if dub.format == "m4a":
        with open(path, "rb") as f:
            head = f.read(2)
        if len(head) == 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
            return "adts"
    return dub.format


def fit_and_mix(dubbed: DubbedSegment, store: SegmentStore, registry: StreamRegistry, settings: Settings,
                clock: Callable[[], float] = time.time) -> FittedSegment:
    """The collect stage. A segment that already fell back, or is past its deadline, passes through."""
    work = dubbed.work
    passed = FittedSegment(work=work, timings_ms=dubbed.timings_ms, fallback=dubbed.fallback)
    if dubbed.fallback or expired(work, clock()):
        return passed
    started = clock()
    out = store.work_path(sibling(work.orig_key, f"fit_{work.sequence:05d}.pcm"))
    dub = dubbed.dub
    try:
        with store.fetch(work.orig_key) as orig, _fetch(store, dub) as dub_path:
            ratio, trimmed = 1.0, 0
            if dub is not None and dub_path is not None:
                plan = fit_plan(dub_samples_48k(dub_path, dub, settings.ffprobe_bin), work.audio_samples,
                                settings.max_stretch)
                ratio, trimmed = plan.ratio, plan.trim
            run_media(fit_args(settings.ffmpeg_bin, dub_path, dub_demuxer(dub, dub_path),
                               dub.sample_rate_hz if dub else AUDIO_RATE, dub.channels if dub else 2, orig,
                               work.audio_samples, ratio, settings.mix_mode, settings.duck_db, out))
        if out.stat().st_size != work.audio_samples * FRAME_BYTES:
            raise MediaError(f"fitted audio is {out.stat().st_size // FRAME_BYTES} samples, "
                             f"not {work.audio_samples}")
        fit_key = store.put(out)
    except (MediaError, OSError, ValueError, StoreError) as exc:
        store.discard(out)
        return passed.model_copy(update={"fallback": give_up(work, registry,
                                                             Reason(ReasonCode.COLLECT_FAILED, str(exc)))})
    store.discard(out)
    elapsed = clock() - started
    registry.metrics.observe("livedub_stage_duration_seconds", elapsed, stage="collect")
    registry.update_segment(work.stream_id, work.sequence, stretch_ratio=round(ratio, 4),
                            trimmed_s=round(trimmed / AUDIO_RATE, 3), timings_ms={"collect": elapsed * 1000})
    return FittedSegment(work=work, timings_ms=dubbed.timings_ms | {"collect": elapsed * 1000},
                         fit_key=fit_key)
