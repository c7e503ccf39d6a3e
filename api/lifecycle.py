"""Start and stop a stream: what every media server's hooks have in common."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import abort

from api.deps import celery, registry, settings
from tasks.queues import STREAM_JOB_TASK
from worker.models import StreamState

log = logging.getLogger(__name__)


def start_stream(stream_id: str, source: str, wait_for_reader: bool) -> tuple[dict[str, Any], int]:
    """Register the stream and enqueue its job; idempotent while the stream is starting or live.

    ``wait_for_reader`` (nginx-rtmp): hold the answer until the job's reader has connected, so the
    reader gets the stream from its first frame (nginx-rtmp has no GOP cache). The wait is bounded.
    """
    reg = registry()
    reg.reconcile(settings().start_timeout_s)
    job_id, created = reg.start(stream_id, source)
    if created:
        try:
            celery().send_task(STREAM_JOB_TASK, args=[stream_id, job_id], task_id=job_id)
        except Exception as exc:  # noqa: BLE001 - the broker can fail in many ways
            reg.finish(stream_id, job_id, StreamState.FAILED, f"could not enqueue the stream job: {exc}")
            abort(503, description="could not enqueue the stream job")
        if wait_for_reader:
            _wait_for_reader(stream_id, settings().reader_wait_s)
    rec = reg.get(stream_id)
    body = {
        "stream_id": stream_id,
        "job_id": job_id,
        "state": rec.state.value if rec else "unknown",
        "created": created,
    }
    return body, 202 if created else 200


def _wait_for_reader(stream_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rec = registry().get(stream_id)
        if rec is None or rec.reader_connected_at is not None or not rec.state.active:
            return
        time.sleep(0.05)
    log.warning("stream %s: reader did not connect within %.1fs; accepting the publish anyway",
                stream_id, timeout_s)


def stop_stream(stream_id: str, reason: str) -> tuple[dict[str, Any], int]:
    """Mark the stream draining: its job finishes what it has and ends."""
    rec = registry().get(stream_id)
    if rec is None:
        abort(404, description=f"unknown stream {stream_id!r}")
    if rec.state in (StreamState.STARTING, StreamState.LIVE):
        registry().mark_draining(stream_id, rec.job_id, reason)
        rec = registry().get(stream_id) or rec
    return {"stream_id": stream_id, "job_id": rec.job_id, "state": rec.state.value}, 200
