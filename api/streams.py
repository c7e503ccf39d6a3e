"""Stream endpoints: viewers read; operators create streams (and their keys), rotate, revoke and stop."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, request

from api.auth import Role, require_role
from api.deps import registry, settings, stream_keys
from api.lifecycle import stream_options
from worker.core.models import LISTED_FIELDS, StreamRecord
from worker.core.naming import InvalidStreamPath, rtmp_url, validate_stream_id, with_key
from worker.core.paging import InvalidPage, parse_page
from worker.state.pages import read_page

bp = Blueprint("streams", __name__, url_prefix="/v1/streams")


@bp.before_request
def _auth() -> None:
    require_role(Role.VIEWER if request.method in ("GET", "HEAD") else Role.OPERATOR)


def _id(stream_id: str) -> str:
    try:
        return validate_stream_id(stream_id)
    except InvalidStreamPath as exc:
        abort(400, description=str(exc))


def _get(stream_id: str) -> StreamRecord:
    rec = registry().get(_id(stream_id), with_segments=False)
    if rec is None:
        abort(404, description=f"unknown stream {stream_id!r}")
    return rec


def _urls(stream_id: str, key: str) -> dict[str, str]:
    base = settings().public_rtmp_url or settings().rtmp_url
    return {"ingest_url": with_key(rtmp_url(base, stream_id, "in"), key),
            "output_url": rtmp_url(base, stream_id, "out")}


@bp.get("")
def list_streams() -> Any:
    return jsonify(streams=[r.model_dump(mode="json", exclude=set(LISTED_FIELDS)) for r in registry().list()])


@bp.post("")
def create() -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("stream_id"), str):
        abort(400, description='body must be a JSON object with "stream_id"')
    sid = _id(body["stream_id"])
    private = body.get("private", False)
    if not isinstance(private, bool):
        abort(400, description='"private" must be true or false')
    options = stream_options({k: str(v) for k, v in body.items() if k not in ("stream_id", "private")})
    made = stream_keys().create(sid, options, private)
    if made is None:
        abort(409, description=f"stream {sid!r} exists; rotate its key with POST /v1/streams/{sid}/key")
    conf, key, play = made
    urls = _urls(sid, key)
    if play:
        urls["output_url"] = with_key(urls["output_url"], play)
    out: dict[str, Any] = {"stream_id": sid, "publish_key": key, **urls, "private": private,
                           "options": conf.options.model_dump(exclude_none=True)}
    if play:
        out["play_key"] = play
    return jsonify(out), 201


@bp.post("/<stream_id>/key")
def rotate(stream_id: str) -> Any:
    sid = _id(stream_id)
    key = stream_keys().rotate(sid)
    if key is None:
        abort(404, description=f"unknown stream {stream_id!r}")
    return jsonify(stream_id=sid, publish_key=key, **_urls(sid, key))


@bp.delete("/<stream_id>/key")
def revoke(stream_id: str) -> Any:
    sid = _id(stream_id)
    if not stream_keys().revoke(sid):
        abort(404, description=f"unknown stream {stream_id!r}")
    return jsonify(stream_id=sid, revoked=True)


@bp.get("/<stream_id>")
def get_stream(stream_id: str) -> Any:
    try:
        page = parse_page(request.args)
    except InvalidPage as exc:
        abort(400, description=str(exc))
    rec = read_page(registry(), _id(stream_id), page)
    if rec is not None:
        return jsonify(rec.model_dump(mode="json"))
    conf = stream_keys().get(stream_id)
    if conf is None:
        abort(404, description=f"unknown stream {stream_id!r}")
    return jsonify(stream_id=conf.stream_id, state="created", private=conf.private,
                   options=conf.options.model_dump(exclude_none=True), created_at=conf.created_at)


@bp.delete("/<stream_id>")
def stop(stream_id: str) -> Any:
    rec = _get(stream_id)
    if not rec.state.active:
        abort(409, description=f"stream {stream_id!r} is already {rec.state.value}")
    registry().request_stop(rec.stream_id, rec.job_id, "stopped by operator")
    return jsonify(stream_id=rec.stream_id, job_id=rec.job_id, state="draining"), 202
