"""The `store` role of `livedub up`, and the tests' fallback store: an S3-compatible server that installs
from PyPI (moto's standalone server, in memory), and the bucket the stack uses.

Production runs MinIO (compose/); anything that speaks S3 works, since livedub only needs put, get,
list and delete.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass

from minio import Minio

from worker.core.store_url import ObjectLocation, parse_store_url
from worker.state.object_store import minio_client

BUCKET = "livedub"


@dataclass(frozen=True)
class S3Server:
    host: str
    port: int
    access_key: str
    secret_key: str

    @classmethod
    def new(cls, host: str, port: int) -> S3Server:
        return cls(host, port, "livedub-" + secrets.token_hex(4), secrets.token_hex(16))

    def args(self) -> list[str]:
        try:
            import moto.server  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("the store role runs moto's S3 server: pip install 'moto[server]' "
                               "(or point --store-url at MinIO or S3)") from exc
        return [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]

    def url(self, prefix: str = "segments") -> str:
        loc = ObjectLocation(endpoint=f"{self.host}:{self.port}", secure=False, bucket=BUCKET,
                             prefix=f"{prefix}/", access_key=self.access_key, secret_key=self.secret_key)
        return loc.url()


def client_for(url: str) -> tuple[Minio, ObjectLocation]:
    loc = parse_store_url(url)
    if not isinstance(loc, ObjectLocation):
        raise ValueError(f"{url!r} is not an object store URL")
    return minio_client(loc, None, None), loc


def ensure_bucket(url: str) -> bool:
    """Create the URL's bucket if it is missing; True once the server answers."""
    client, loc = client_for(url)
    if not client.bucket_exists(loc.bucket):
        client.make_bucket(loc.bucket)
    return True
