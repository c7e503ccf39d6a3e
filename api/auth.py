"""Who may do what: API tokens (viewer, operator) and media-server access (stream keys, livedub's own
credential). The decisions are pure functions; the views call them with what they looked up."""

from __future__ import annotations

import enum
import hmac

from flask import abort, request

from api.deps import registry, settings
from worker.core.models import StreamConf
from worker.core.naming import StreamPath
from worker.state.stream_keys import matches


class Role(enum.IntEnum):
    VIEWER = 1  # reads streams, segments, transcripts, the dashboard
    OPERATOR = 2  # also creates, stops, rotates and revokes


class Refusal(enum.StrEnum):
    """Why the media server is told no. One reason for an unknown stream and a wrong key."""

    BAD_KEY = "bad_key"
    NOT_LIVEDUB = "not_livedub"  # publishing live/<id>/out or reading live/<id>/in without livedub's key
    PRIVATE = "private"  # reading a private stream's output without its play key
    ACTION = "action"  # an action livedub never allows (playback, api, pprof through the auth hook)


def same(given: str | None, expected: str | None) -> bool:
    if not given or expected is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def role_of(token: str, tokens: dict[str, str]) -> Role | None:
    """The role a bearer token gives, if any. Pure (constant-time compares)."""
    for name, role in (("operator", Role.OPERATOR), ("viewer", Role.VIEWER)):
        if same(token, tokens.get(name)):
            return role
    return None


def media_access(action: str, path: StreamPath, key: str | None, conf: StreamConf | None,
                 internal_key: str | None, open_publishing: bool) -> Refusal | None:
    """May this publish or read go ahead on the media server? None: yes. ``internal_key`` None: the
    deployment is explicitly insecure and livedub's own credential is not checked. Pure."""
    livedub = internal_key is None or same(key, internal_key)
    if action == "publish":
        if path.direction == "out":
            return None if livedub else Refusal.NOT_LIVEDUB
        if open_publishing or (conf is not None and matches(key, conf.key_sha256)):
            return None
        return Refusal.BAD_KEY
    if action == "read":
        if path.direction == "in":
            return None if livedub else Refusal.NOT_LIVEDUB
        if conf is not None and conf.private and not (matches(key, conf.play_sha256)
                                                      or (internal_key is not None and same(key, internal_key))):
            return Refusal.PRIVATE
        return None
    return Refusal.ACTION


def internal_key() -> str | None:
    """livedub's own media-server credential; None only in an explicitly insecure setup."""
    s = settings()
    key = s.internal_key_value()
    if key is None and not s.hook_insecure:
        return ""  # nothing matches it: a deployment without the key refuses outsiders (and itself)
    return key


def require_role(role: Role) -> None:
    """401 without a valid bearer token, 403 with a viewer's where an operator's is needed. With no token
    configured and an explicitly insecure setup (LIVEDUB_HOOK_INSECURE), everyone is an operator."""
    s = settings()
    tokens = s.api_tokens()
    if not tokens and s.hook_insecure:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    have = role_of(given.strip(), tokens) if scheme.lower() == "bearer" else None
    if have is None:
        registry().metrics.count("livedub_api_auth_refused_total", status="401")
        abort(401, description="a token is required: Authorization: Bearer <viewer or operator token>")
    if have < role:
        registry().metrics.count("livedub_api_auth_refused_total", status="403")
        abort(403, description="this needs the operator token")
