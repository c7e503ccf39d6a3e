"""Render the local nginx-rtmp configuration. Pure: paths and ports in, text out."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from urllib.parse import quote

RTMP_MODULE_CANDIDATES = (
    Path("/usr/lib/nginx/modules/ngx_rtmp_module.so"),
    Path("/usr/lib64/nginx/modules/ngx_rtmp_module.so"),
)


@dataclass(frozen=True)
class NginxConfig:
    run_dir: Path
    rtmp_port: int
    http_port: int
    api_url: str
    secret: str | None
    rtmp_module: Path
    bind: str = "127.0.0.1"
    idle_timeout_s: int = 10


def find_rtmp_module() -> Path:
    for path in RTMP_MODULE_CANDIDATES:
        if path.exists():
            return path
    raise FileNotFoundError("ngx_rtmp_module.so not found: apt-get install nginx libnginx-mod-rtmp")


def render(cfg: NginxConfig) -> str:
    template = Template(resources.files("worker.devstack").joinpath("templates/nginx.conf.tmpl").read_text())
    query = f"?secret={quote(cfg.secret, safe='')}" if cfg.secret else ""
    return template.substitute(
        run_dir=cfg.run_dir,
        rtmp_module=cfg.rtmp_module,
        bind=cfg.bind,
        rtmp_port=cfg.rtmp_port,
        http_port=cfg.http_port,
        idle_timeout=f"{cfg.idle_timeout_s}s",
        hook_base=f"{cfg.api_url.rstrip('/')}/v1/hooks/nginx-rtmp",
        hook_query=query,
    )


def temp_dirs(run_dir: Path) -> list[Path]:
    return [run_dir / "tmp" / d for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")]
