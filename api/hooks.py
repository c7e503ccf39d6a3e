"""Media-server hooks: MediaMTX (runOnAvailable / runOnUnavailable via the hook script) and nginx-rtmp."""

from __future__ import annotations

import ipaddress
from typing import Any, TypeVar

from flask import Blueprint, abort, jsonify, request
from pydantic import BaseModel, ValidationError

from api.auth import Refusal, internal_key, media_access
from api.deps import registry, require_secret, settings, stream_keys
from api.lifecycle import start_stream, stop_stream, stream_options
from worker.core.models import MediaMTXHook, NginxRtmpHook, StreamOptions
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


def check_access(action: str, path: StreamPath, key: str | None) -> None:
    """403 (the media server refuses the publish or the read) unless :func:`media_access` allows it. The
    answer is the same for an unknown stream and a wrong key; no key is ever logged."""
    s = settings()
    conf = stream_keys().get(path.stream_id)
    refusal = media_access(action, path, key, conf, internal_key(), s.open_publishing)
    if refusal is None:
        return
    registry().metrics.count("livedub_media_access_refused_total", action=action, reason=refusal.value)
    if action == "publish" and path.direction == "in":
        registry().metrics.count("livedub_publishes_refused_total", reason=refusal.value)
    abort(403, description={
        Refusal.BAD_KEY: "publish refused: unknown stream or wrong key (create the stream, publish with ?key=)",
        Refusal.NOT_LIVEDUB: f"only livedub may {'publish' if action == 'publish' else 'read'} {path.path}",
        Refusal.PRIVATE: "this stream is private: play its output with its play key",
        Refusal.ACTION: f"action {action!r} is not allowed",
    }[refusal])


def publish_options(stream_id: str, query: dict[str, str]) -> StreamOptions:
    """The stream's options as its operator created it, with the publish URL's query on top."""
    conf = stream_keys().get(stream_id)
    base = conf.options.model_dump(exclude_none=True) if conf is not None else {}
    given = stream_options(query).model_dump(exclude_none=True)
    return StreamOptions.model_validate({**base, **given})


@bp.post("/mediamtx/ready")
def mediamtx_ready() -> Any:
    hook = _payload(MediaMTXHook)
    sid = _input_only(_path(hook))
    opts = publish_options(sid, hook.query())  # MediaMTX checked the key (authMethod: http, below)
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
    form = request.form.to_dict()  # nginx-rtmp passes the URL's query as form fields
    if path.direction == "out":
        # livedub's own publisher republishing the dubbed output, with its key, from its hosts; nobody else.
        if not publisher_allowed(hook.addr, settings().publisher_networks):
            registry().metrics.count("livedub_media_access_refused_total", action="publish",
                                     reason=Refusal.NOT_LIVEDUB.value)
            abort(403, description="only livedub's publisher may publish live/<id>/out "
                                   "(LIVEDUB_PUBLISHER_NETWORKS lists its hosts)")
        check_access("publish", path, form.get("key"))
        return jsonify(stream_id=path.stream_id, accepted="output"), 200
    check_access("publish", path, form.get("key"))
    opts = publish_options(path.stream_id, form)
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
    check_access("read", path, request.form.get("key"))
    if path.direction == "in":
        registry().reader_connected(path.stream_id)
    return jsonify(stream_id=path.stream_id, play=path.direction), 200
