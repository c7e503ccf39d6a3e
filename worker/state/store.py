"""The segment store. Tasks pass keys; media bytes live here.

Keys are ``<stream>/<job>/<file>`` (or ``<stream>/<job>/partN/<file>``), checked before they touch a
path or an object name. Each host works on files in a local work directory (ffmpeg reads and writes
files); :meth:`put` makes a work file reachable by its key from any host, :meth:`fetch` gives a local
file for a key, :meth:`open` a stream of its bytes. Two backends: :class:`LocalSegmentStore`, a
directory (one machine: the work directory *is* the store, so put and fetch cost nothing), and
``object_store.ObjectSegmentStore``, an S3-compatible bucket that every host reaches.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from worker.core.naming import validate_stream_id
from worker.core.settings import Settings
from worker.core.store_url import ObjectLocation, parse_store_url

_EXPIRES = ".expires_at"
_PART_RE = re.compile(r"[A-Za-z0-9_.-]+")


class StoreError(Exception):
    """The store could not put, fetch or open an object (a network or server fault)."""


def check_job_id(job_id: str) -> str:
    if not job_id.isalnum() or not job_id.isascii():
        raise ValueError(f"invalid job id {job_id!r}")
    return job_id


def sibling(key: str, name: str) -> str:
    """The key of another file next to ``key`` (same stream, job and part)."""
    return check_key(f"{key.rsplit('/', 1)[0]}/{name}")


def check_key(key: str) -> str:
    """A key ``<stream>/<job>/<name>[/<name>]``; ValueError for anything else (``..``, absolute, odd
    characters)."""
    parts = key.split("/")
    if len(parts) < 3 or len(parts) > 4:
        raise ValueError(f"key {key!r} is not <stream>/<job>/<file>")
    validate_stream_id(parts[0])
    check_job_id(parts[1])
    for part in parts[2:]:
        if not _PART_RE.fullmatch(part) or part in (".", ".."):
            raise ValueError(f"key {key!r} is outside the store")
    return key


class SegmentStore(Protocol):
    url: str

    def work_dir(self, stream_id: str, job_id: str) -> Path: ...
    def key_of(self, path: Path) -> str: ...
    def work_path(self, key: str) -> Path: ...
    def put(self, path: Path) -> str: ...
    def fetch(self, key: str) -> AbstractContextManager[Path]: ...
    def open(self, key: str) -> BinaryIO: ...
    def read(self, key: str) -> bytes: ...
    def discard(self, *paths: Path) -> None: ...
    def remove(self, keys: list[str]) -> None: ...
    def expire(self, stream_id: str, job_id: str, ttl_s: float) -> None: ...
    def sweep(self) -> int: ...


class LocalSegmentStore:
    def __init__(self, root: Path, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.clock = clock
        self.url = root.resolve().as_uri()

    def work_dir(self, stream_id: str, job_id: str) -> Path:
        validate_stream_id(stream_id)
        path = self.root / stream_id / check_job_id(job_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, key: str) -> Path:
        """The local path of a key; refuses keys that leave the store."""
        p = (self.root / check_key(key)).resolve()
        if self.root.resolve() not in p.parents:
            raise ValueError(f"key {key!r} is outside the store")
        return p

    def key_of(self, path: Path) -> str:
        return check_key(str(path.resolve().relative_to(self.root.resolve())))

    def work_path(self, key: str) -> Path:
        return self.path(key)

    def put(self, path: Path) -> str:
        return self.key_of(path)  # the work directory is the store

    @contextmanager
    def fetch(self, key: str) -> Iterator[Path]:
        yield self.path(key)

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def discard(self, *paths: Path) -> None:
        """Work files that are in the store already: kept (they are the store)."""

    def remove(self, keys: list[str]) -> None:
        """Delete stored files (a published segment's); missing ones are fine."""
        for key in keys:
            self.path(key).unlink(missing_ok=True)

    def expire(self, stream_id: str, job_id: str, ttl_s: float) -> None:
        """Mark a job's files for deletion ``ttl_s`` from now (stream end + TTL)."""
        (self.work_dir(stream_id, job_id) / _EXPIRES).write_text(repr(self.clock() + ttl_s))

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


def store_location(settings: Settings) -> Path | ObjectLocation:
    """Where the segments live: the directory or the object store ``LIVEDUB_STORE_URL`` names, else the
    local directory ``LIVEDUB_STORE_DIR``. Pure."""
    return parse_store_url(settings.store_url) if settings.store_url else settings.store_dir


def make_store(settings: Settings) -> SegmentStore:
    """The store :func:`store_location` names. With an object store, ``LIVEDUB_STORE_DIR`` is this host's
    scratch for work files. The S3 client (minio) loads only where the store is an object store."""
    where = store_location(settings)
    if isinstance(where, Path):
        return LocalSegmentStore(where)
    from worker.state.object_store import ObjectSegmentStore, minio_client

    secret = settings.store_secret_key.get_secret_value() if settings.store_secret_key else None
    return ObjectSegmentStore(minio_client(where, settings.store_access_key, secret), where, settings.store_dir)


def preload_store(settings: Settings) -> None:
    """Load the S3 client now where the store is an object store: a worker does it before it forks its
    pool, so its processes' first tasks do not pay the import (0.35 s of CPU each)."""
    if not isinstance(store_location(settings), Path):
        import worker.state.object_store  # noqa: F401
