"""Speech mode's collect and remux stages: place each unit's dub on the stream's audio timeline, and
make each sealed video piece's audio from the timeline (the original ducked under the dubs placed there).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack

from worker.core.messages import DubbedUnit, PieceWork
from worker.core.placement import Placement, overlap, place_dub, samples, seconds, window_end
from worker.core.segments import DubOutcome, Reason, ReasonCode, SegmentStatus
from worker.core.settings import Settings
from worker.core.timing import AUDIO_RATE, FRAME_BYTES, SEAM_AHEAD
from worker.core.units import Unit
from worker.media.commands import dub_pcm_args, piece_args
from worker.media.mix import PlacedDub, db_gain, from_pcm, mix_piece
from worker.media.run import MediaError, run_media
from worker.pipeline.collect import dub_demuxer, dub_samples_48k
from worker.state.registry import StreamRegistry
from worker.state.store import SegmentStore, StoreError, sibling
from worker.state.units import PlaceResult, UnitBook

TRIES = 3


def late(unit: Unit, sealed_s: float, lag_s: float) -> Reason:
    return Reason(ReasonCode.LATE, f"the dub could start {sealed_s - unit.start_s:.2f}s after its unit's start "
                                   f"at the earliest; the most is {lag_s:g}s")


def place_unit(dubbed: DubbedUnit, store: SegmentStore, registry: StreamRegistry, units: UnitBook,
               settings: Settings, clock: Callable[[], float] = time.time) -> Placement | None:
    """The collect stage (speech mode): fit the dub into the room its unit has and place it; or settle the
    unit as fallback (too late, unreadable) or processed with nothing to place (no speech heard)."""
    work = dubbed.work
    if dubbed.fallback is not None:
        return None  # settled by STS-dispatch
    started = clock()
    if dubbed.dub is None:
        units.settle(work.stream_id, work.sequence, SegmentStatus.PROCESSED)
        return None
    dub = dubbed.dub
    try:
        with store.fetch(dub.key) as path:
            length = dub_samples_48k(path, dub, settings.ffprobe_bin)
            for _ in range(TRIES):
                unit = units.get(work.stream_id, work.sequence)
                rec = registry.get(work.stream_id, with_segments=False)
                if unit is None or rec is None or unit.settled:
                    return None
                sealed_s = units.sealed_until(work.stream_id)
                end_by = window_end(samples(unit.end_s),
                                    samples(unit.next_start_s) if unit.next_start_s is not None else None,
                                    samples(max(unit.clear_until_s or 0.0, rec.heard_until_s or 0.0)),
                                    samples(settings.max_lag_s + 0.5))
                plan = place_dub(samples(unit.start_s), end_by, max(length, 1), samples(sealed_s),
                                 samples(settings.max_lag_s), settings.speech_max_stretch)
                if plan is None:
                    units.settle(work.stream_id, work.sequence, SegmentStatus.FALLBACK,
                                 late(unit, sealed_s, settings.max_lag_s))
                    return None
                out = store.work_path(sibling(dub.key, f"placed_u{work.sequence:05d}.pcm"))
                run_media(dub_pcm_args(settings.ffmpeg_bin, path, dub_demuxer(dub, path), dub.sample_rate_hz,
                                       dub.channels, plan.samples, plan.ratio, out))
                if out.stat().st_size != plan.samples * FRAME_BYTES:
                    raise MediaError(f"placed dub is {out.stat().st_size // FRAME_BYTES} samples, not {plan.samples}")
                key = store.put(out)
                store.discard(out)
                elapsed = clock() - started
                result = units.place(work.stream_id, work.sequence, seconds(plan.start), dub_key=key,
                                     dub_start_s=seconds(plan.start), dub_end_s=seconds(plan.end),
                                     lag_s=round(seconds(plan.start) - unit.start_s, 3),
                                     stretch_ratio=round(plan.ratio, 4),
                                     trimmed_s=round(plan.trimmed / AUDIO_RATE, 3), placed_at=clock(),
                                     timings_ms=dubbed.timings_ms | {"collect": elapsed * 1000})
                if result is PlaceResult.PLACED:
                    registry.metrics.observe("livedub_stage_duration_seconds", elapsed, stage="collect")
                    registry.metrics.observe("livedub_dub_lag_seconds", seconds(plan.start) - unit.start_s)
                    return plan
                if result is PlaceResult.SETTLED:
                    return None
            units.settle(work.stream_id, work.sequence, SegmentStatus.FALLBACK,
                         Reason(ReasonCode.LATE, "the timeline was sealed past the dub while it was placed"))
    except (MediaError, OSError, ValueError, StoreError) as exc:
        units.settle(work.stream_id, work.sequence, SegmentStatus.FALLBACK,
                     Reason(ReasonCode.COLLECT_FAILED, str(exc)))
    return None


def remux_timeline(work: PieceWork, store: SegmentStore, registry: StreamRegistry, units: UnitBook,
                   settings: Settings, clock: Callable[[], float] = time.time) -> str | None:
    """The remux stage (speech mode): the piece's audio from the timeline, its video copied. A piece past
    its deadline does no work (the publisher has put out its fallback)."""
    if clock() > work.deadline_at:
        return None
    started = clock()
    n, lead = work.audio_samples, work.lead_samples
    n0 = work.timeline_sample - lead  # orig_key's audio: the piece and the audio around it
    n1 = work.timeline_sample + n + SEAM_AHEAD
    placed = [u for u in units.range(work.stream_id, work.first_unit, work.last_unit)
              if u.status is SegmentStatus.PROCESSED and u.dub_key and u.dub_start_s is not None
              and u.dub_end_s is not None and overlap(n0, n1, samples(u.dub_start_s), samples(u.dub_end_s))]
    if not placed and (seg := registry.segment(work.stream_id, work.sequence)) is not None and seg.fallback_piece:
        # No dub on it: the timeline there is the original, which the fallback piece already carries (the
        # same PCM and the same encode); no second encode (0.2 CPU-s a piece on 2 cores).
        return _ready(work, registry, seg.fallback_piece, clock() - started, clock, placed)
    fit = store.work_path(sibling(work.orig_key, f"fit_{work.sequence:05d}.pcm"))
    piece = store.work_path(sibling(work.orig_key, f"piece_{work.sequence:05d}.ts"))
    try:
        with ExitStack() as stack:
            orig = from_pcm(store.read(work.orig_key))
            dubs = [PlacedDub(samples(u.dub_start_s or 0.0), from_pcm(stack.enter_context(
                store.fetch(u.dub_key or "")).read_bytes())) for u in placed]
            fit.write_bytes(mix_piece(orig, n0, dubs, db_gain(settings.duck_db)).tobytes())
            segment = stack.enter_context(store.fetch(work.segment_key))
            run_media(piece_args(settings.ffmpeg_bin, segment, fit, work.audio_start_sample - lead, piece,
                                 settings.audio_bitrate, work.ts_offset_s, samples=n, lead=lead))
        key = store.put(piece)
    except (MediaError, OSError, StoreError, ValueError) as exc:
        registry.update_segment(work.stream_id, work.sequence, dub=DubOutcome.FALLBACK,
                                **Reason(ReasonCode.REMUX_FAILED, str(exc)).fields("dub_"))
        return None
    finally:
        store.discard(fit, piece)
    return _ready(work, registry, key, clock() - started, clock, placed)


def _ready(work: PieceWork, registry: StreamRegistry, key: str, elapsed: float, clock: Callable[[], float],
           placed: list[Unit]) -> str:
    registry.metrics.observe("livedub_stage_duration_seconds", elapsed, stage="remux")
    registry.update_segment(work.stream_id, work.sequence, dub=DubOutcome.READY, piece=key, ready_at=clock(),
                            timings_ms={"remux": elapsed * 1000},
                            transcript=" ".join(u.transcript or "" for u in placed).strip() or None)
    return key
