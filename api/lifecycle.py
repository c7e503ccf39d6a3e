"""Start and stop a stream: what every media server's hooks have in common."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from flask import abort
from pydantic import ValidationError

from api.deps import celery, registry, settings
from tasks.queues import STREAM_JOB_TASK
from worker.core.models import StreamOptions, StreamState
from worker.state.registry import StartOutcome

log = logging.getLogger(__name__)


def stream_options(values: Mapping[str, str]) -> StreamOptions:
    """Per-stream options from the publish URL's query; 400 when one is out of range."""
    try:
        return StreamOptions.model_validate(dict(values))
    except ValidationError as exc:
        first = exc.errors()[0]
        abort(400, description=f"invalid stream option {first['loc'][0]}: {first['msg']}")


def start_stream(
    stream_id: str, source: str, wait_for_reader: bool, options: StreamOptions | None = None
) -> tuple[dict[str, Any], int]:
    """Register the stream and enqueue its job; idempotent while the stream is starting or live.

    ``wait_for_reader`` (nginx-rtmp): hold the answer until the job's reader has connected, so the
    reader gets the stream from its first frame (nginx-rtmp has no GOP cache). The wait is bounded.
    """
    reg = registry()
    reg.reconcile(settings().start_timeout_s, only=stream_id)  # a dead job must not keep the stream
    limit = settings().max_live_streams
    started = reg.start(stream_id, source, limit)
    if started.outcome is StartOutcome.AT_LIMIT:
        reg.metrics.count("livedub_publishes_refused_total", reason="stream_limit")
        log.warning("publish refused: %d streams active, the limit (LIVEDUB_MAX_LIVE_STREAMS)", started.resume)
        abort(429, description=f"livedub is dubbing its limit of {limit} streams at once; try again later")
    job_id = started.job_id
    if started.created:
        chosen = (options or StreamOptions()).model_dump(exclude_none=True)
        if chosen:
            reg.set_fields(stream_id, **chosen)
        _enqueue(stream_id, job_id, job_id, [stream_id, job_id])
    elif started.outcome is StartOutcome.RESUMED:
        # The input dropped and came back while the output still drains: the same job goes on with
        # a new reader, numbering continues, and the output path stays published.
        log.info("stream %s: re-published; resuming job %s (%d)", stream_id, job_id, started.resume)
        _enqueue(stream_id, job_id, f"{job_id}-p{started.resume}", [stream_id, job_id, started.resume])
    if wait_for_reader and started.outcome is not StartOutcome.EXISTING:
        _wait_for_reader(stream_id, settings().reader_wait_s)
    rec = reg.get(stream_id)
    body = {
        "stream_id": stream_id,
        "job_id": job_id,
        "state": rec.state.value if rec else "unknown",
        "created": started.created,
        "resumed": started.outcome is StartOutcome.RESUMED,
    }
    return body, 200 if started.outcome is StartOutcome.EXISTING else 202


def _enqueue(stream_id: str, job_id: str, task_id: str, args: list[object]) -> None:
    try:
        celery().send_task(STREAM_JOB_TASK, args=args, task_id=task_id)
    except Exception as exc:  # noqa: BLE001 - the broker can fail in many ways
        registry().finish(stream_id, job_id, StreamState.FAILED, f"could not enqueue the stream job: {exc}")
        abort(503, description="could not enqueue the stream job")


def _wait_for_reader(stream_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rec = registry().get(stream_id, with_segments=False)
        if rec is None or rec.reader_connected_at is not None or not rec.state.active:
            return
        time.sleep(0.05)
    log.warning("stream %s: reader did not connect within %.1fs; accepting the publish anyway",
                stream_id, timeout_s)


def stop_stream(stream_id: str, reason: str) -> tuple[dict[str, Any], int]:
    """Mark the stream draining: its job finishes what it has and ends."""
    rec = registry().get(stream_id, with_segments=False)
    if rec is None:
        abort(404, description=f"unknown stream {stream_id!r}")
    if rec.state in (StreamState.STARTING, StreamState.LIVE):
        registry().mark_draining(stream_id, rec.job_id, reason)
        rec = registry().get(stream_id, with_segments=False) or rec
    return {"stream_id": stream_id, "job_id": rec.job_id, "state": rec.state.value}, 200
