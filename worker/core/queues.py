"""The pipeline's queue names, one per stage: each has its own Celery queue and worker pool."""

from __future__ import annotations

INGEST = "ingest"
STS = "sts"
COLLECT = "collect"
REMUX = "remux"
PUBLISH = "publish"

ALL_QUEUES = (INGEST, STS, COLLECT, REMUX, PUBLISH)
