"""Wiring: build the real collaborators (Redis, store, settings, STS pool) once per process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TypeVar, cast

import redis

from worker.core.messages import SegmentWork
from worker.core.segments import Segment
from worker.core.settings import Settings, load_settings
from worker.pipeline.ingest import StreamJob
from worker.pipeline.prepare import SegmentPreparer, StreamPlan
from worker.pipeline.sts_dispatch import StsPool
from worker.state.object_store import make_store
from worker.state.registry import StreamRegistry
from worker.state.store import SegmentStore

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


def build_stream_job(
    stream_id: str, job_id: str, shutdown: threading.Event, start_chain: Callable[[SegmentWork], None],
    start_publisher: Callable[..., None], resume: int = 0, hand_over: Callable[[int], None] | None = None,
    takeover: int = 0,
) -> StreamJob:
    settings = process_settings()
    registry = process_registry(settings)
    store = process_store(settings)
    rec = registry.get(stream_id, with_segments=False)
    plan = StreamPlan(
        segment_seconds=(rec.segment_seconds if rec and rec.segment_seconds else settings.segment_seconds),
        source_language=settings.source_language,
        target_language=(rec.target_language if rec and rec.target_language else settings.target_language),
        voice_profile=(rec.voice_profile if rec and rec.voice_profile else settings.voice_profile),
    )

    def make_preparer(out_dir: Path, reader_alive: Callable[[], bool],
                      offset_s: float | None) -> Callable[[Segment], None]:
        return SegmentPreparer(stream_id, job_id, out_dir, registry=registry, store=store, settings=settings,
                               plan=plan, start_chain=start_chain, reader_alive=reader_alive,
                               start_publisher=lambda: start_publisher(stream_id, job_id), offset_s=offset_s)

    return StreamJob(stream_id, job_id, registry=registry, store=store, settings=settings, shutdown=shutdown,
                     make_preparer=make_preparer, resume=resume, hand_over=hand_over, takeover=takeover,
                     restart_publisher=lambda: start_publisher(stream_id, job_id, restart=True))
