"""Stream keys: the streams an operator created, their options and hashed keys, in one Redis hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

import redis

from worker.core.models import StreamConf, StreamOptions
from worker.state.registry import StreamRegistry


def new_key() -> str:
    return secrets.token_urlsafe(24)  # 192 bits


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def matches(key: str | None, sha256: str | None) -> bool:
    """Constant-time: does ``key`` hash to ``sha256``? False for a missing key or hash."""
    return bool(key) and sha256 is not None and hmac.compare_digest(digest(key or ""), sha256)


class StreamKeys:
    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.time) -> None:
        self._r, self.clock = client, clock
        self.name = StreamRegistry.keys_key

    def get(self, stream_id: str) -> StreamConf | None:
        raw = self._r.hget(self.name, stream_id)
        return None if raw is None else StreamConf.model_validate_json(raw)

    def create(self, stream_id: str, options: StreamOptions, private: bool = False) -> tuple[StreamConf, str,
                                                                                              str | None] | None:
        """A new stream: (its conf, its publish key, its play key when private); None if it exists."""
        key, play = new_key(), new_key() if private else None
        conf = StreamConf(stream_id=stream_id, key_sha256=digest(key), options=options, private=private,
                          play_sha256=digest(play) if play else None, created_at=self.clock())
        if not self._r.hsetnx(self.name, stream_id, conf.model_dump_json()):
            return None
        return conf, key, play

    def rotate(self, stream_id: str) -> str | None:
        """A new publish key (the old one stops working at once); None for an unknown stream."""
        conf = self.get(stream_id)
        if conf is None:
            return None
        key = new_key()
        conf = conf.model_copy(update={"key_sha256": digest(key), "rotated_at": self.clock()})
        self._r.hset(self.name, stream_id, conf.model_dump_json())
        return key

    def revoke(self, stream_id: str) -> bool:
        return bool(self._r.hdel(self.name, stream_id))
