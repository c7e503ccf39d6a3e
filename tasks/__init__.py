"""The Celery app: ``celery -A tasks worker -Q ingest`` works as-is.

The app object exists at import, but its configuration is read from the environment only when
Celery first configures it (``on_configure``), never at import time.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from tasks.config import celery_config


def create_celery(settings: Any = None) -> Celery:
    celery = Celery("livedub", include=["tasks.stream", "tasks.pipeline"])

    @celery.on_configure.connect(weak=False)
    def _configure(sender: Celery, **_: Any) -> None:
        from worker.core.settings import load_settings

        sender.conf.update(celery_config(settings or load_settings()))

    return celery


app = create_celery()
