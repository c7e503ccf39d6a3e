"""Where the segment store lives: ``LIVEDUB_STORE_URL``, parsed. A pure function.

- ``file:///abs/path``: a directory on this host (the one-machine default).
- ``s3://ACCESS:SECRET@HOST:PORT/BUCKET/PREFIX``: an S3-compatible object store over HTTPS;
  ``s3+http://...`` for one on plain HTTP (a private network, a test). The credentials may be left out
  of the URL and given as ``LIVEDUB_STORE_ACCESS_KEY``/``LIVEDUB_STORE_SECRET_KEY`` instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
PREFIX_RE = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


class StoreUrlError(ValueError):
    """A store URL livedub cannot use; the message says why."""


@dataclass(frozen=True)
class ObjectLocation:
    endpoint: str  # host:port
    secure: bool
    bucket: str
    prefix: str  # "" or "a/b/" (always ends with "/")
    access_key: str | None
    secret_key: str | None

    def url(self, with_credentials: bool = True) -> str:
        """The complete URL again; with credentials it is all another host needs to connect."""
        creds = ""
        if with_credentials and self.access_key is not None:
            creds = f"{quote(self.access_key, safe='')}:{quote(self.secret_key or '', safe='')}@"
        scheme = "s3" if self.secure else "s3+http"
        return f"{scheme}://{creds}{self.endpoint}/{self.bucket}/{self.prefix}".rstrip("/")


def parse_store_url(url: str) -> Path | ObjectLocation:
    """A local directory (``file://``) or an object store location; StoreUrlError when neither."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise StoreUrlError(f"store URL {url!r}: a file URL needs an absolute path (file:///path)")
        return Path(unquote(parts.path))
    if parts.scheme not in ("s3", "s3+http"):
        raise StoreUrlError(f"store URL {url!r}: expected file:///path, s3://HOST/BUCKET or s3+http://HOST/BUCKET")
    if not parts.hostname:
        raise StoreUrlError(f"store URL {url!r}: no endpoint host")
    bucket, _, prefix = parts.path.strip("/").partition("/")
    if not BUCKET_RE.fullmatch(bucket):
        raise StoreUrlError(f"store URL {url!r}: {bucket!r} is not a valid bucket name")
    if prefix and not PREFIX_RE.fullmatch(prefix):
        raise StoreUrlError(f"store URL {url!r}: prefix {prefix!r} may hold only A-Z a-z 0-9 _ . - and /")
    if prefix and ".." in prefix.split("/"):
        raise StoreUrlError(f"store URL {url!r}: prefix {prefix!r} may not contain '..'")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    secure = parts.scheme == "s3"
    endpoint = f"{host}:{parts.port or (443 if secure else 80)}"
    return ObjectLocation(
        endpoint=endpoint, secure=secure, bucket=bucket, prefix=f"{prefix}/" if prefix else "",
        access_key=unquote(parts.username) if parts.username is not None else None,
        secret_key=unquote(parts.password) if parts.password is not None else None,
    )
