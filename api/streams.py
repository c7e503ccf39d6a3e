"""Stream read and operator endpoints."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify

from api.deps import registry, require_secret
from worker.core.models import StreamRecord
from worker.core.naming import InvalidStreamPath, validate_stream_id

bp = Blueprint("streams", __name__, url_prefix="/v1/streams")


def _id(stream_id: str) -> str:
    try:
        return validate_stream_id(stream_id)
    except InvalidStreamPath as exc:
        abort(400, description=str(exc))


def _get(stream_id: str) -> StreamRecord:
    rec = registry().get(_id(stream_id))
    if rec is None:
        abort(404, description=f"unknown stream {stream_id!r}")
    return rec


@bp.get("")
def list_streams() -> Any:
    return jsonify(streams=[r.model_dump(mode="json", exclude={"segments"}) for r in registry().list()])


@bp.get("/<stream_id>")
def get_stream(stream_id: str) -> Any:
    return jsonify(_get(stream_id).model_dump(mode="json"))


@bp.delete("/<stream_id>")
def stop(stream_id: str) -> Any:
    require_secret()
    rec = _get(stream_id)
    if not rec.state.active:
        abort(409, description=f"stream {stream_id!r} is already {rec.state.value}")
    registry().request_stop(rec.stream_id, rec.job_id, "stopped by operator")
    return jsonify(stream_id=rec.stream_id, job_id=rec.job_id, state="draining"), 202
