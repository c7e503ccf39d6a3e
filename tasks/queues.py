"""Task names, and the routes that send each task to its stage's queue."""

from __future__ import annotations

from worker.core.queues import ALL_QUEUES, COLLECT, INGEST, PUBLISH, REMUX, STS

__all__ = ["ALL_QUEUES", "COLLECT", "INGEST", "PUBLISH", "REMUX", "STS", "TASK_ROUTES"]

# Task names are "livedub.<queue>.<name>"; each prefix routes to its own queue.
TASK_ROUTES = {f"livedub.{q}.*": {"queue": q} for q in ALL_QUEUES}

STREAM_JOB_TASK = "livedub.ingest.stream_job"
STS_DISPATCH_TASK = "livedub.sts.dispatch"
COLLECT_TASK = "livedub.collect.fit"
REMUX_TASK = "livedub.remux.piece"
PUBLISH_TASK = "livedub.publish.stream"
# Speech mode: a unit's chain (STS-dispatch -> collect places its dub) and a sealed piece's remux.
STS_UNIT_TASK = "livedub.sts.unit"
PLACE_TASK = "livedub.collect.place"
TIMELINE_REMUX_TASK = "livedub.remux.timeline"
