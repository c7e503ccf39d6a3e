"""The stream dashboard: one server-rendered page; a small script polls the streams API."""

from __future__ import annotations

from flask import Blueprint, render_template

from api.deps import settings

bp = Blueprint("dashboard", __name__)


@bp.get("/")
@bp.get("/dashboard")
def dashboard() -> str:
    s = settings()
    return render_template("dashboard.html", rtmp_url=s.public_rtmp_url or s.rtmp_url,
                           hls_template=s.hls_url_template or "", refresh_ms=2000)
