"""The segment store. Tasks pass keys; media bytes live here, in a directory per job.

Its interface is narrow (``job_dir``, ``path``, ``key_of``, ``expire``, ``sweep``): keys are
``<stream>/<job>/<file>``, and a key that would leave the store is refused.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from worker.core.naming import validate_stream_id

_EXPIRES = ".expires_at"


class LocalSegmentStore:
    def __init__(self, root: Path, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.clock = clock

    def job_dir(self, stream_id: str, job_id: str) -> Path:
        validate_stream_id(stream_id)
        if not job_id.isalnum():
            raise ValueError(f"invalid job id {job_id!r}")
        path = self.root / stream_id / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, key: str) -> Path:
        """The local path of a key ``<stream>/<job>/<file>``; refuses keys that leave the store."""
        p = (self.root / key).resolve()
        if self.root.resolve() not in p.parents:
            raise ValueError(f"key {key!r} is outside the store")
        return p

    def key_of(self, path: Path) -> str:
        return str(path.resolve().relative_to(self.root.resolve()))

    def expire(self, stream_id: str, job_id: str, ttl_s: float) -> None:
        """Mark a job's files for deletion ``ttl_s`` from now (stream end + TTL)."""
        (self.job_dir(stream_id, job_id) / _EXPIRES).write_text(repr(self.clock() + ttl_s))

    def sweep(self) -> int:
        """Delete expired job directories. Returns how many were removed."""
        removed = 0
        for marker in self.root.glob(f"*/*/{_EXPIRES}"):
            try:
                due = float(marker.read_text())
            except (OSError, ValueError):
                continue
            if due <= self.clock():
                shutil.rmtree(marker.parent, ignore_errors=True)
                removed += 1
        return removed
