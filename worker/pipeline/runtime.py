"""Wiring: build the real collaborators (Redis, store, settings, STS pool) once per process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar, cast

import redis

from worker.core.messages import PieceWork, SegmentWork, UnitWork
from worker.core.segments import Segment
from worker.core.settings import Settings, load_settings
from worker.core.units import Segmentation, segmentation_of
from worker.pipeline.ingest import StreamJob
from worker.pipeline.prepare import SegmentPreparer, StreamPlan
from worker.pipeline.speech import SpeechTracker
from worker.pipeline.sts_dispatch import StsPool
from worker.state.registry import StreamRegistry
from worker.state.store import SegmentStore, make_store

T = TypeVar("T")


@lru_cache(maxsize=1)
def process_settings() -> Settings:
    return load_settings()


def make_registry(settings: Settings) -> StreamRegistry:
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=10
    )
    return StreamRegistry(client, record_ttl_s=settings.record_ttl_s)


_made: dict[tuple[Callable[..., object], int], object] = {}


def _once(make: Callable[[Settings], T], settings: Settings) -> T:
    """One ``make(settings)`` per process and settings object (a Redis pool, the STS connections)."""
    key = (make, id(settings))
    if key not in _made:
        _made[key] = make(settings)
    return cast(T, _made[key])


def process_registry(settings: Settings) -> StreamRegistry:
    return _once(make_registry, settings)


def process_store(settings: Settings) -> SegmentStore:
    return _once(make_store, settings)


def sts_pool(settings: Settings) -> StsPool:
    return _once(StsPool, settings)


@dataclass(frozen=True)
class SpeechStarters:
    """How speech mode starts a unit's chain (STS-dispatch -> collect) and a sealed piece's remux."""

    start_unit: Callable[[UnitWork], None]
    start_remux: Callable[[PieceWork], None]


def build_stream_job(
    stream_id: str, job_id: str, shutdown: threading.Event, start_chain: Callable[[SegmentWork], None],
    start_publisher: Callable[..., None], resume: int = 0, hand_over: Callable[[int], None] | None = None,
    takeover: int = 0, speech: SpeechStarters | None = None,
) -> StreamJob:
    settings = process_settings()
    registry = process_registry(settings)
    store = process_store(settings)
    rec = registry.get(stream_id, with_segments=False)
    mode = segmentation_of(rec.segmentation if rec else None, settings.segmentation)
    latency_s = (rec.latency_s if rec and rec.latency_s else settings.latency_s) if mode is Segmentation.SPEECH \
        else None
    plan = StreamPlan(
        segment_seconds=(rec.segment_seconds if rec and rec.segment_seconds else settings.segment_seconds),
        source_language=settings.source_language,
        target_language=(rec.target_language if rec and rec.target_language else settings.target_language),
        voice_profile=(rec.voice_profile if rec and rec.voice_profile else settings.voice_profile),
    )

    def make_preparer(out_dir: Path, reader_alive: Callable[[], bool],
                      offset_s: float | None) -> Callable[[Segment], None]:
        tracker = None
        if latency_s is not None and speech is not None:
            tracker = SpeechTracker(stream_id, job_id, out_dir, registry=registry, store=store, settings=settings,
                                    languages=(plan.source_language, plan.target_language, plan.voice_profile),
                                    latency_s=latency_s, start_unit=speech.start_unit,
                                    start_remux=speech.start_remux)
        return SegmentPreparer(stream_id, job_id, out_dir, registry=registry, store=store, settings=settings,
                               plan=plan, start_chain=start_chain, reader_alive=reader_alive,
                               start_publisher=lambda: start_publisher(stream_id, job_id), offset_s=offset_s,
                               speech=tracker, latency_s=latency_s if tracker is not None else None)

    return StreamJob(stream_id, job_id, registry=registry, store=store, settings=settings, shutdown=shutdown,
                     make_preparer=make_preparer, resume=resume, hand_over=hand_over, takeover=takeover,
                     restart_publisher=lambda: start_publisher(stream_id, job_id, restart=True))
