"""Thin tasks for the per-segment chain and the per-stream publisher.

The chain tasks are idempotent (keyed by stream id and sequence number: files are rewritten, registry
fields merged), so they are acked late and redelivered if their worker dies mid-task.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import chain
from celery.signals import worker_init

from tasks import app
from tasks.queues import (
    COLLECT_TASK,
    PLACE_TASK,
    PUBLISH_TASK,
    REMUX_TASK,
    STREAM_JOB_TASK,
    STS,
    STS_DISPATCH_TASK,
    STS_UNIT_TASK,
    TIMELINE_REMUX_TASK,
)
from tasks.shutdown import SHUTDOWN
from worker.core.messages import DubbedSegment, DubbedUnit, FittedSegment, PieceWork, SegmentWork, UnitWork
from worker.pipeline.collect import fit_and_mix
from worker.pipeline.publisher import Publisher
from worker.pipeline.remux import remux_piece
from worker.pipeline.runtime import process_registry, process_settings, process_store, sts_pool
from worker.pipeline.sts_dispatch import dub_segment, dub_unit
from worker.pipeline.timeline import place_unit, remux_timeline
from worker.state.store import preload_store
from worker.state.units import UnitBook
from worker.sts.client import preload as preload_sts_client

IDEMPOTENT: dict[str, Any] = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


def start_chain(work: SegmentWork) -> None:
    """STS-dispatch -> collect -> remux, each on its own queue. Never waits on a result."""
    chain(app.signature(STS_DISPATCH_TASK, args=(work.model_dump(mode="json"),)), app.signature(COLLECT_TASK),
          app.signature(REMUX_TASK)).apply_async()


def start_unit(work: UnitWork) -> None:
    """Speech mode: STS-dispatch -> collect (which places the dub) for one unit."""
    chain(app.signature(STS_UNIT_TASK, args=(work.model_dump(mode="json"),)), app.signature(PLACE_TASK)).apply_async()


def start_timeline_remux(work: PieceWork) -> None:
    """Speech mode: a sealed piece's audio from the timeline, and the piece."""
    app.send_task(TIMELINE_REMUX_TASK, args=[work.model_dump(mode="json")])


def start_publisher(stream_id: str, job_id: str, restart: bool = False) -> None:
    task_id = f"pub-{job_id}-{uuid.uuid4().hex[:6]}" if restart else f"pub-{job_id}"
    app.send_task(PUBLISH_TASK, args=[stream_id, job_id], task_id=task_id)


@worker_init.connect
def _load_clients(sender: Any, **_: Any) -> None:
    """A worker loads the clients its tasks use before it forks its pool, so its processes' first tasks
    do not pay the imports: the S3 client where the store is an object store, the Socket.IO client where
    the worker consumes the STS queue (0.35 and 0.4 s of CPU); a worker that needs neither loads neither."""
    preload_store(process_settings())
    if STS in sender.app.amqp.queues.consume_from:
        preload_sts_client()


@app.task(name=STS_DISPATCH_TASK, **IDEMPOTENT)
def sts_dispatch(work: dict[str, Any]) -> dict[str, Any]:
    s = process_settings()
    out = dub_segment(SegmentWork.model_validate(work), process_store(s), process_registry(s), sts_pool(s))
    return out.model_dump(mode="json")


@app.task(name=COLLECT_TASK, **IDEMPOTENT)
def collect(dubbed: dict[str, Any]) -> dict[str, Any]:
    s = process_settings()
    out = fit_and_mix(DubbedSegment.model_validate(dubbed), process_store(s), process_registry(s), s)
    return out.model_dump(mode="json")


@app.task(name=REMUX_TASK, **IDEMPOTENT)
def remux(fitted: dict[str, Any]) -> dict[str, Any]:
    s = process_settings()
    out = remux_piece(FittedSegment.model_validate(fitted), process_store(s), process_registry(s), s)
    return out.model_dump(mode="json")


@app.task(name=STS_UNIT_TASK, **IDEMPOTENT)
def sts_unit(work: dict[str, Any]) -> dict[str, Any]:
    s = process_settings()
    reg = process_registry(s)
    out = dub_unit(UnitWork.model_validate(work), process_store(s), reg, UnitBook(reg), sts_pool(s))
    return out.model_dump(mode="json")


@app.task(name=PLACE_TASK, **IDEMPOTENT)
def place(dubbed: dict[str, Any]) -> None:
    s = process_settings()
    reg = process_registry(s)
    place_unit(DubbedUnit.model_validate(dubbed), process_store(s), reg, UnitBook(reg), s)


@app.task(name=TIMELINE_REMUX_TASK, **IDEMPOTENT)
def remux_from_timeline(work: dict[str, Any]) -> None:
    s = process_settings()
    reg = process_registry(s)
    remux_timeline(PieceWork.model_validate(work), process_store(s), reg, UnitBook(reg), s)


@app.task(name=PUBLISH_TASK, ignore_result=True, trail=False)
def publish(stream_id: str, job_id: str, taking_over: bool = False) -> str:
    """One per stream, as long as the stream. Not acks_late: the lease guards against duplicates.
    ``taking_over``: queued by a publisher whose worker shuts down; this one goes on after it."""
    s = process_settings()

    def restart_ingest(attempt: int) -> None:
        app.send_task(STREAM_JOB_TASK, args=[stream_id, job_id], task_id=f"{job_id}-r{attempt}")

    def hand_over(n: int) -> None:
        app.send_task(PUBLISH_TASK, args=[stream_id, job_id, True], task_id=f"pub-{job_id}-h{n}")

    return Publisher(stream_id, job_id, registry=process_registry(s), store=process_store(s), settings=s,
                     restart_ingest=restart_ingest, shutdown=SHUTDOWN, hand_over=hand_over,
                     taking_over=taking_over).run()
