"""MediaMTX's external authentication (``authMethod: http``): it asks before every publish and read.

No hook secret here: MediaMTX sends no header of ours. The endpoint only answers yes or no for a path
and a key (keys are 192-bit random), counts refusals, and logs no key.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, request
from pydantic import ValidationError

from api.hooks import check_access
from worker.core.models import MediaMTXAuth
from worker.core.naming import InvalidStreamPath, parse_path

bp = Blueprint("media_auth", __name__, url_prefix="/v1/auth")


@bp.post("/mediamtx")
def mediamtx() -> Any:
    try:
        req = MediaMTXAuth.model_validate(request.get_json(silent=True))
    except ValidationError:
        abort(400, description="body must be MediaMTX's auth request (JSON with an action)")
    if req.action not in ("publish", "read"):
        abort(403, description=f"action {req.action!r} is not allowed (exclude it with authHTTPExclude)")
    try:
        path = parse_path(req.path)
    except InvalidStreamPath as exc:
        abort(403, description=str(exc))
    check_access(req.action, path, req.key())
    return jsonify(allowed=True)
