"""Wiring: build the real collaborators (Redis, store, settings) for a process."""

from __future__ import annotations

import threading
from functools import lru_cache

import redis

from worker.ingest import StreamJob
from worker.registry import StreamRegistry
from worker.settings import Settings, load_settings
from worker.store import LocalSegmentStore


@lru_cache(maxsize=1)
def process_settings() -> Settings:
    return load_settings()


def make_registry(settings: Settings) -> StreamRegistry:
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=10
    )
    return StreamRegistry(client, record_ttl_s=settings.record_ttl_s)


def build_stream_job(stream_id: str, job_id: str, shutdown: threading.Event) -> StreamJob:
    settings = process_settings()
    return StreamJob(
        stream_id,
        job_id,
        registry=make_registry(settings),
        store=LocalSegmentStore(settings.store_dir),
        settings=settings,
        shutdown=shutdown,
    )
