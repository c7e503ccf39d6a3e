"""remux: the dubbed piece, the segment's video copied and the fitted audio encoded to AAC."""

from __future__ import annotations

import time
from collections.abc import Callable

from worker.core.messages import FittedSegment, PieceOutcome
from worker.core.segments import DubOutcome, Reason, ReasonCode
from worker.core.settings import Settings
from worker.media.commands import piece_args
from worker.media.run import MediaError, run_media
from worker.pipeline.outcome import expired, give_up
from worker.state.registry import StreamRegistry
from worker.state.store import SegmentStore, StoreError, sibling


def remux_piece(fitted: FittedSegment, store: SegmentStore, registry: StreamRegistry, settings: Settings,
                clock: Callable[[], float] = time.time) -> PieceOutcome:
    """The remux stage, on the AAC-frame grid. A segment that fell back or is late passes through."""
    work = fitted.work
    passed = PieceOutcome(work=work, timings_ms=fitted.timings_ms, fallback=fitted.fallback)
    if fitted.fallback or fitted.fit_key is None or expired(work, clock()):
        return passed
    started = clock()
    piece = store.work_path(sibling(fitted.fit_key, f"piece_{work.sequence:05d}.ts"))
    try:
        with store.fetch(work.segment_key) as segment, store.fetch(fitted.fit_key) as fit:
            run_media(piece_args(settings.ffmpeg_bin, segment, fit, work.audio_start_sample, piece,
                                 settings.audio_bitrate, work.ts_offset_s))
        piece_key = store.put(piece)
    except (MediaError, OSError, StoreError) as exc:
        return passed.model_copy(update={"fallback": give_up(work, registry,
                                                             Reason(ReasonCode.REMUX_FAILED, str(exc)))})
    elapsed = clock() - started
    registry.metrics.observe("livedub_stage_duration_seconds", elapsed, stage="remux")
    store.discard(piece)
    registry.update_segment(work.stream_id, work.sequence, dub=DubOutcome.READY, piece=piece_key,
                            timings_ms={"remux": elapsed * 1000}, ready_at=clock())
    return PieceOutcome(work=work, timings_ms=fitted.timings_ms | {"remux": elapsed * 1000},
                        piece_key=piece_key)
