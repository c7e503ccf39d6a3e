"""Queue names, one per pipeline stage, and the routes that send each task to its queue."""

from __future__ import annotations

INGEST = "ingest"
STS = "sts"
COLLECT = "collect"
REMUX = "remux"
PUBLISH = "publish"

ALL_QUEUES = (INGEST, STS, COLLECT, REMUX, PUBLISH)

# Task names are "livedub.<queue>.<name>"; each prefix routes to its own queue.
TASK_ROUTES = {f"livedub.{q}.*": {"queue": q} for q in ALL_QUEUES}

STREAM_JOB_TASK = "livedub.ingest.stream_job"
STS_DISPATCH_TASK = "livedub.sts.dispatch"
COLLECT_TASK = "livedub.collect.fit"
REMUX_TASK = "livedub.remux.piece"
PUBLISH_TASK = "livedub.publish.stream"
