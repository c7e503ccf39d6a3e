from __future__ import annotations

from typing import Any

import redis
from flask import Blueprint, jsonify

from api.deps import registry, settings

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> Any:
    try:
        registry().ping()
    except redis.RedisError as exc:
        return jsonify(status="unavailable", redis=f"error: {type(exc).__name__}"), 503
    # open_publishing: any publish starts a job without a stream key (`livedub up --open`, rehearsal only)
    return jsonify(status="ok", redis="ok", open_publishing=settings().open_publishing)
