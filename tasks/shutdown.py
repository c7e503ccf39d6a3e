"""The worker's warm shutdown (SIGTERM: a redeploy), as an event the long-running jobs watch: an ingest
job hands its run over, a publisher hands over at a piece boundary."""

from __future__ import annotations

import threading
from typing import Any

from celery.signals import worker_shutting_down

SHUTDOWN = threading.Event()


@worker_shutting_down.connect
def _on_shutdown(**_: Any) -> None:
    SHUTDOWN.set()
