"""The segment store in an S3-compatible bucket (MinIO, S3, ...), through minio-py.

Chosen over boto3 on measured latency: a 1.5 MB put and streamed get took 13.1 ms (minio-py) against
16.0-19.1 ms (boto3), medians of 30 against the same local S3 server; minio-py is also one small package.

Objects are ``<prefix><stream>/<job>/<file>``. Files move with ``fput``/``fget`` and ``open`` streams,
so a stage never holds a whole object it only copies. A stream's expiry is a small marker object
``<prefix>_expires/<stream>/<job>`` holding its due time; :meth:`sweep` deletes the job's objects once
it is due (the bucket's lifecycle rule, set in compose, is the backstop).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO, cast

from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from urllib3.exceptions import HTTPError

from worker.core.store_url import ObjectLocation
from worker.state.store import StoreError, check_job_id, check_key

FAULTS = (MinioException, HTTPError)

_EXPIRES = "_expires/"


class _Body:
    """A streamed object body that gives its connection back to the pool when closed."""

    def __init__(self, resp: Any) -> None:
        self.resp = resp

    def read(self, n: int = -1) -> bytes:
        return cast(bytes, self.resp.read(None if n < 0 else n))

    def close(self) -> None:
        self.resp.close()
        self.resp.release_conn()

    def __enter__(self) -> _Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ObjectSegmentStore:
    def __init__(self, client: Minio, loc: ObjectLocation, scratch: Path,
                 clock: Callable[[], float] = time.time) -> None:
        self.client, self.loc, self.scratch, self.clock = client, loc, scratch, clock
        self.url = loc.url(with_credentials=False)

    def _name(self, key: str) -> str:
        return self.loc.prefix + check_key(key)

    def work_dir(self, stream_id: str, job_id: str) -> Path:
        check_key(f"{stream_id}/{check_job_id(job_id)}/x")
        path = self.scratch / stream_id / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def key_of(self, path: Path) -> str:
        return check_key(str(path.resolve().relative_to(self.scratch.resolve())))

    def work_path(self, key: str) -> Path:
        """Where this host writes the file that will be put under ``key``."""
        path = self.scratch / check_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def put(self, path: Path) -> str:
        key = self.key_of(path)
        try:
            self.client.fput_object(self.loc.bucket, self._name(key), str(path))
        except FAULTS as exc:
            raise StoreError(f"put {key}: {exc}") from exc
        return key

    @contextmanager
    def fetch(self, key: str) -> Iterator[Path]:
        """The object, downloaded to a private file in this host's scratch, removed afterwards."""
        tmp = self.scratch / ".fetch" / f"{uuid.uuid4().hex}{Path(key).suffix}"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            try:
                self.client.fget_object(self.loc.bucket, self._name(key), str(tmp))
            except FAULTS as exc:
                raise StoreError(f"fetch {key}: {exc}") from exc
            yield tmp
        finally:
            tmp.unlink(missing_ok=True)

    def open(self, key: str) -> BinaryIO:
        try:
            return cast(BinaryIO, _Body(self.client.get_object(self.loc.bucket, self._name(key))))
        except FAULTS as exc:
            raise StoreError(f"open {key}: {exc}") from exc

    def read(self, key: str) -> bytes:
        with self.open(key) as body:
            try:
                return body.read()
            except FAULTS as exc:
                raise StoreError(f"read {key}: {exc}") from exc

    def discard(self, *paths: Path) -> None:
        """Work files already put in the bucket: removed from this host's scratch."""
        for p in paths:
            p.unlink(missing_ok=True)

    def remove(self, keys: list[str]) -> None:
        """Delete stored objects (a published segment's); missing ones are fine."""
        try:
            errors = list(self.client.remove_objects(self.loc.bucket, (DeleteObject(self._name(k)) for k in keys)))
        except FAULTS as exc:
            raise StoreError(f"remove: {exc}") from exc
        if errors:
            raise StoreError(f"remove: {errors[0]}")

    def expire(self, stream_id: str, job_id: str, ttl_s: float) -> None:
        due = repr(self.clock() + ttl_s).encode()
        name = f"{self.loc.prefix}{_EXPIRES}{check_key(f'{stream_id}/{job_id}/x').rsplit('/', 1)[0]}"
        self.client.put_object(self.loc.bucket, name, BytesIO(due), len(due))

    def sweep(self) -> int:
        """Delete the objects of jobs whose expiry is due. Returns how many jobs were removed."""
        removed = 0
        markers = self.loc.prefix + _EXPIRES
        for obj in self.client.list_objects(self.loc.bucket, prefix=markers, recursive=True):
            name = obj.object_name or ""
            try:
                due = float(self.read_marker(name))
            except (S3Error, ValueError):
                continue
            if due > self.clock():
                continue
            job_prefix = f"{self.loc.prefix}{name[len(markers):]}/"
            doomed = (DeleteObject(o.object_name or "") for o in
                      self.client.list_objects(self.loc.bucket, prefix=job_prefix, recursive=True))
            for err in self.client.remove_objects(self.loc.bucket, doomed):
                raise RuntimeError(f"could not delete {err.name}: {err.message}")
            self.client.remove_object(self.loc.bucket, name)
            removed += 1
        return removed

    def read_marker(self, name: str) -> str:
        with _Body(self.client.get_object(self.loc.bucket, name)) as body:
            return body.read().decode()


def minio_client(loc: ObjectLocation, access_key: str | None, secret_key: str | None) -> Minio:
    return Minio(loc.endpoint, access_key=loc.access_key or access_key, secret_key=loc.secret_key or secret_key,
                 secure=loc.secure, region="us-east-1")
