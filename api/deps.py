"""Accessors for the app's collaborators, so views never build clients themselves."""

from __future__ import annotations

import hmac

from celery import Celery
from flask import abort, current_app, request

from worker.core.settings import Settings
from worker.state.registry import StreamRegistry
from worker.state.stream_keys import StreamKeys

SECRET_HEADER = "X-Livedub-Secret"


def registry() -> StreamRegistry:
    reg: StreamRegistry = current_app.extensions["livedub_registry"]
    return reg


def stream_keys() -> StreamKeys:
    keys: StreamKeys = current_app.extensions["livedub_stream_keys"]
    return keys


def celery() -> Celery:
    app: Celery = current_app.extensions["celery"]
    return app


def settings() -> Settings:
    s: Settings = current_app.config["LIVEDUB"]
    return s


def require_secret() -> None:
    """401 unless the request carries the shared secret: a header, a ``hook_secret`` form field (the MediaMTX
    hook script: the body, not its command line), or ``?secret=`` (nginx-rtmp can send nothing else)."""
    expected = current_app.config["HOOK_SECRET"]
    if expected is None:
        return
    given = request.headers.get(SECRET_HEADER) or request.form.get("hook_secret") or request.args.get("secret") or ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        abort(401, description="missing or wrong hook secret")
