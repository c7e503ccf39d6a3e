"""Media-server hooks: MediaMTX (runOnAvailable / runOnUnavailable via the hook script) and nginx-rtmp."""

from __future__ import annotations

import ipaddress
from typing import Any, TypeVar

from flask import Blueprint, abort, jsonify, request
from pydantic import BaseModel, ValidationError

from api.deps import registry, require_secret, settings
from api.lifecycle import start_stream, stop_stream, stream_options
from worker.core.models import MediaMTXHook, NginxRtmpHook
from worker.core.naming import InvalidStreamPath, StreamPath

bp = Blueprint("hooks", __name__, url_prefix="/v1/hooks")
M = TypeVar("M", bound=BaseModel)


def publisher_allowed(addr: str, networks: list[str]) -> bool:
    """Whether the address a publish came from is one of livedub's publish hosts."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


@bp.before_request
def _auth() -> None:
    require_secret()


def _payload(model: type[M]) -> M:
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            abort(400, description="body must be a JSON object")
    else:
        data = request.form.to_dict()
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        abort(400, description=f"invalid hook payload: {where}: {first['msg']}")


def _path(hook: MediaMTXHook | NginxRtmpHook) -> StreamPath:
    try:
        return hook.stream_path()
    except InvalidStreamPath as exc:
        abort(400, description=str(exc))


def _input_only(path: StreamPath) -> str:
    if path.direction != "in":
        abort(400, description=f"only live/<id>/in starts a job, not {path.path}")
    return path.stream_id


@bp.post("/mediamtx/ready")
def mediamtx_ready() -> Any:
    hook = _payload(MediaMTXHook)
    sid = _input_only(_path(hook))
    opts = stream_options(hook.query())
    body, code = start_stream(sid, f"mediamtx:{hook.MTX_SOURCE_TYPE}", wait_for_reader=False, options=opts)
    return jsonify(body), code


@bp.post("/mediamtx/not-ready")
def mediamtx_not_ready() -> Any:
    hook = _payload(MediaMTXHook)
    sid = _input_only(_path(hook))
    body, code = stop_stream(sid, "publisher stopped (mediamtx not-ready)")
    return jsonify(body), code


@bp.post("/nginx-rtmp/publish")
def nginx_publish() -> Any:
    hook = _payload(NginxRtmpHook)
    path = _path(hook)
    if path.direction == "out":
        # livedub's own publisher republishing the dubbed output; nobody else may.
        if not publisher_allowed(hook.addr, settings().publisher_networks):
            abort(403, description="only livedub's publisher may publish live/<id>/out "
                                   "(LIVEDUB_PUBLISHER_NETWORKS lists its hosts)")
        return jsonify(stream_id=path.stream_id, accepted="output"), 200
    opts = stream_options(request.form.to_dict())  # nginx-rtmp passes the URL's query as form fields
    body, code = start_stream(path.stream_id, "nginx-rtmp", wait_for_reader=True, options=opts)
    return jsonify(body), code


@bp.post("/nginx-rtmp/publish-done")
def nginx_publish_done() -> Any:
    hook = _payload(NginxRtmpHook)
    path = _path(hook)
    if path.direction == "out":
        return jsonify(stream_id=path.stream_id, accepted="output"), 200
    body, code = stop_stream(path.stream_id, "publisher stopped (nginx-rtmp publish-done)")
    return jsonify(body), code


@bp.post("/nginx-rtmp/play")
def nginx_play() -> Any:
    hook = _payload(NginxRtmpHook)
    path = _path(hook)
    if path.direction == "in":
        registry().reader_connected(path.stream_id)
    return jsonify(stream_id=path.stream_id, play=path.direction), 200
