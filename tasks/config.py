"""Celery configuration, built from :class:`worker.core.settings.Settings` inside a factory."""

from __future__ import annotations

from typing import Any

from tasks.queues import TASK_ROUTES
from worker.core.settings import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        "task_routes": TASK_ROUTES,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_expires": 3600,
        # Long per-stream jobs: a worker takes one message at a time, so no job waits behind another.
        "worker_prefetch_multiplier": 1,
        # Long jobs are acked on receipt (no redelivery after the visibility timeout); a job's
        # lease in the registry guards against duplicates anyway.
        "task_acks_late": False,
        "broker_transport_options": {"visibility_timeout": 3600},
        "broker_connection_retry_on_startup": True,
        # Flower needs task events.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
    }
