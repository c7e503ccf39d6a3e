"""The compose deployment can't run here (no Docker engine), so its files are checked against the code."""

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from api import create_app
from worker.cli import main as cli
from worker.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())
MEDIAMTX = yaml.safe_load((ROOT / "compose" / "mediamtx.yml").read_text())


def services():
    return COMPOSE["services"]


def test_every_livedub_command_exists():
    for name, svc in services().items():
        cmd = svc.get("command")
        if not cmd or cmd[0] != "livedub":
            continue
        result = CliRunner().invoke(cli, [cmd[1], "--help"])
        assert result.exit_code == 0, (name, result.output)
        for option in (c for c in cmd[2:] if c.startswith("--")):
            assert option in result.output, (name, option)
        if cmd[1] == "worker":
            assert name == f"worker-{cmd[-1]}"
    gunicorn = services()["api"]["command"]
    assert gunicorn[-1] == "api:create_app()"


def test_env_vars_are_settings_and_required_ones_are_set():
    fields = {f"LIVEDUB_{k.upper()}" for k in Settings.model_fields}
    for name, svc in services().items():
        for var in (svc.get("environment") or {}):
            if var.startswith("LIVEDUB_") and name != "mediamtx":
                assert var in fields, (name, var)
    api_env = services()["api"]["environment"]
    assert "LIVEDUB_HOOK_SECRET" in api_env and ":?" in api_env["LIVEDUB_HOOK_SECRET"]  # required, no default
    example = (ROOT / "compose" / ".env.example").read_text()
    listed = set(re.findall(r"^(LIVEDUB_\w+)=", example, re.M))
    assert fields - {"LIVEDUB_HOOK_SECRET_FILE", "LIVEDUB_HOOK_INSECURE", "LIVEDUB_FFMPEG_BIN",
                     "LIVEDUB_FFPROBE_BIN", "LIVEDUB_STS_TOKEN_FILE"} <= listed
    assert listed <= fields, listed - fields


def test_published_ports_do_not_clash():
    host_ports = [p.split(":")[0] for svc in services().values() for p in svc.get("ports", [])]
    assert len(host_ports) == len(set(host_ports))
    assert "8889" not in host_ports and MEDIAMTX["webrtc"] is False


def test_mediamtx_hooks_target_real_routes_with_the_secret():
    app = create_app({"SETTINGS": load_settings(hook_secret="x", redis_url="redis://127.0.0.1:1/0")})
    rules = {r.rule for r in app.url_map.iter_rules()}
    script = (ROOT / "worker" / "scripts" / "mediamtx-hook.sh").read_text()
    assert "X-Livedub-Secret" in script
    in_path = next(v for k, v in MEDIAMTX["paths"].items() if k.endswith("/in$"))
    for key, event in (("runOnReady", "ready"), ("runOnNotReady", "not-ready")):
        assert in_path[key] == f"sh /hooks/mediamtx-hook.sh {event}"
        assert f"/v1/hooks/mediamtx/{event}" in rules
    mounts = services()["mediamtx"]["volumes"]
    assert "../worker/scripts/mediamtx-hook.sh:/hooks/mediamtx-hook.sh:ro" in mounts
    env = services()["mediamtx"]["environment"]
    assert env["LIVEDUB_API_URL"] == "http://api:8000" and "LIVEDUB_HOOK_SECRET" in env


@pytest.mark.parametrize("path,starts", [("live/cam1/in", True), ("live/cam1/out", False), ("live/a.b/in", False)])
def test_mediamtx_path_patterns(path, starts):
    pattern = next(k for k in MEDIAMTX["paths"] if k.endswith("/in$"))
    assert bool(re.match(pattern[1:], path)) is starts
