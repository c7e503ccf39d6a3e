"""Thin tasks for the per-stream ingest job: arguments, routing, and the shutdown signal."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from tasks import app
from tasks.queues import STREAM_JOB_TASK
from tasks.shutdown import SHUTDOWN
from worker.pipeline.runtime import SpeechStarters, build_stream_job

log = logging.getLogger(__name__)


# trail=False: a stream job runs for hours and starts a chain per segment; with the default trail,
# Celery keeps every one of their results on the job's request until it ends (memory grows).
@app.task(name=STREAM_JOB_TASK, ignore_result=False, trail=False)
def stream_job(stream_id: str, job_id: str, resume: int = 0, takeover: int = 0) -> dict[str, Any]:
    """Run one stream's ingest job until its input ends or it is stopped. Not acks_late: a long
    job is not redelivered; a worker that dies is caught by the registry's heartbeat expiry.
    ``resume``: the n-th re-publish of the stream, which this run reads; ``takeover``: the n-th
    handover of a shutting-down worker, whose reader this run takes over."""
    from tasks.pipeline import start_chain, start_publisher, start_timeline_remux, start_unit

    def hand_over(n: int) -> None:  # the worker shuts down: another worker of the pool goes on
        app.send_task(STREAM_JOB_TASK, args=[stream_id, job_id], kwargs={"takeover": n},
                      task_id=f"{job_id}-h{n}-{uuid.uuid4().hex[:6]}")  # sent again while unclaimed

    job = build_stream_job(stream_id, job_id, SHUTDOWN, start_chain, start_publisher, resume, hand_over, takeover,
                           SpeechStarters(start_unit, start_timeline_remux))
    outcome = job.run()
    log.info("stream %s job %s: %s (%s)", stream_id, job_id, outcome.state, outcome.reason)
    return {"state": outcome.state, "reason": outcome.reason, "segments": outcome.segments}
