"""Stream ids and the paths and URLs built from them. Pure functions.

A stream id is validated here before it touches a path, a URL or a command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

STREAM_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
APP = "live"


class InvalidStreamPath(ValueError):
    """A path or id that livedub refuses; the message is the reason given to the caller."""


def validate_stream_id(stream_id: str) -> str:
    if not isinstance(stream_id, str) or not STREAM_ID_RE.fullmatch(stream_id):
        raise InvalidStreamPath(
            f"invalid stream id {stream_id!r}: expected 1-64 characters of A-Z a-z 0-9 _ -"
        )
    return stream_id


@dataclass(frozen=True)
class StreamPath:
    stream_id: str
    direction: str  # "in" or "out"

    @property
    def path(self) -> str:
        return f"{APP}/{self.stream_id}/{self.direction}"


def parse_path(path: str) -> StreamPath:
    """Parse a media-server path ``live/<id>/in`` or ``live/<id>/out`` (MediaMTX's MTX_PATH)."""
    parts = path.strip("/").split("/")
    if len(parts) != 3 or parts[0] != APP or parts[2] not in ("in", "out"):
        raise InvalidStreamPath(f"path {path!r} is not live/<id>/in or live/<id>/out")
    return StreamPath(validate_stream_id(parts[1]), parts[2])


def parse_nginx_name(app: str, name: str) -> StreamPath:
    """Parse nginx-rtmp's ``app`` and ``name`` (``name`` is ``<id>/in``; args are already split off)."""
    if app != APP:
        raise InvalidStreamPath(f"application {app!r} is not {APP!r}")
    return parse_path(f"{APP}/{name}")


def input_path(stream_id: str) -> str:
    return StreamPath(validate_stream_id(stream_id), "in").path


def output_path(stream_id: str) -> str:
    return StreamPath(validate_stream_id(stream_id), "out").path


def with_key(url: str, key: str | None) -> str:
    """An RTMP URL with its credential as the ``key`` query parameter (what nginx-rtmp's hooks and
    MediaMTX's auth see, and what ffmpeg and OBS take as given)."""
    return f"{url}?{urlencode({'key': key})}" if key else url


def rtmp_url(base: str, stream_id: str, direction: str) -> str:
    """A URL that both ffmpeg and a person can use.

    ffmpeg's RTMP parser takes everything up to the last slash as the app, so ``live/<id>`` would
    become the app; the double slash makes it ``app=live``, ``name=<id>/<direction>`` on nginx-rtmp.
    MediaMTX joins app and name back into ``live/<id>/<direction>``, so the same URL serves both.
    """
    validate_stream_id(stream_id)
    if direction not in ("in", "out"):
        raise InvalidStreamPath(f"direction {direction!r} is not in/out")
    return f"{base.rstrip('/')}/{APP}//{stream_id}/{direction}"
