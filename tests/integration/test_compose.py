"""The compose deployment can't run here (no Docker engine), so its files are checked against the code."""

import re
import secrets
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from api import create_app
from worker.cli.main import main as cli
from worker.core.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())
MEDIAMTX = yaml.safe_load((ROOT / "compose" / "mediamtx.yml").read_text())


OURS = {"livedub:latest", "livedub-sts:latest"}  # the images compose/Dockerfile builds


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
                     "LIVEDUB_FFPROBE_BIN", "LIVEDUB_STS_TOKEN_FILE", "LIVEDUB_OPERATOR_TOKEN_FILE",
                     "LIVEDUB_VIEWER_TOKEN_FILE", "LIVEDUB_INTERNAL_KEY_FILE"} <= listed
    assert listed <= fields, listed - fields


def test_published_ports_do_not_clash():
    host_ports = [p.rsplit(":", 1)[0] for svc in services().values() for p in svc.get("ports", [])]
    assert len(host_ports) == len(set(host_ports))
    # only what broadcasters and viewers use is public; the API and the dashboards are on this host only
    public = {p.split(":")[0] for p in host_ports if not p.startswith("127.0.0.1:")}
    assert public == {"1935", "8888"}, host_ports
    redis_svc = services()["redis"]
    assert redis_svc["networks"] == ["backend"] and "ports" not in redis_svc
    assert "--requirepass" in " ".join(redis_svc["command"]) and "--maxmemory" in " ".join(redis_svc["command"])
    assert "8889" not in host_ports and MEDIAMTX["webrtc"] is False


def test_mediamtx_hooks_target_real_routes_with_the_secret():
    app = create_app({"SETTINGS": load_settings(hook_secret="x-hook-secret-0123", redis_url="redis://127.0.0.1:1/0",
                                                reconcile_interval_s=0)})
    rules = {r.rule for r in app.url_map.iter_rules()}
    script = (ROOT / "compose" / "mediamtx-hook.sh").read_text()
    assert "hook_secret=" in script and "X-Livedub-Secret" not in script  # in the body, not in argv
    in_path = next(v for k, v in MEDIAMTX["paths"].items() if k.endswith("/in$"))
    for key, event in (("runOnAvailable", "ready"), ("runOnUnavailable", "not-ready")):
        assert in_path[key] == f"sh /hooks/mediamtx-hook.sh {event}"
        assert f"/v1/hooks/mediamtx/{event}" in rules
    mounts = services()["mediamtx"]["volumes"]
    assert "./mediamtx-hook.sh:/hooks/mediamtx-hook.sh:ro" in mounts
    env = services()["mediamtx"]["environment"]
    assert env["LIVEDUB_API_URL"] == "http://api:8000" and "LIVEDUB_HOOK_SECRET" in env


@pytest.mark.parametrize("path,starts", [("live/cam1/in", True), ("live/cam1/out", False), ("live/a.b/in", False)])
def test_mediamtx_path_patterns(path, starts):
    pattern = next(k for k in MEDIAMTX["paths"] if k.endswith("/in$"))
    assert bool(re.match(pattern[1:], path)) is starts


def declared_metrics():
    from worker.state.metrics import COUNTERS, HISTOGRAMS

    names = set(COUNTERS) | {f"{h}_bucket" for h in HISTOGRAMS} | set(HISTOGRAMS)
    names |= {"livedub_queue_depth", "livedub_streams", "livedub_sts_inflight_fragments", "livedub_sts_queue_depth",
              "livedub_sts_streams", "livedub_sts_fragments_total", "livedub_sts_backpressure_events_total", "up"}
    return names


def metric_names(expr):
    words = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b(?=\s*[{\[)]|\s*$|\s*[><=])", expr))
    return {w for w in words if w.startswith(("livedub_", "media_service_")) or w == "up"}


def test_every_image_is_pinned_to_a_version():
    for name, svc in services().items():
        image = svc.get("image", "")
        if image in OURS:  # built from this repository
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and re.search(r"\d", tag) and "latest" not in tag, (name, image)


def test_the_pools_share_segments_through_minio_not_a_volume():
    for name, svc in services().items():
        if svc.get("image") not in OURS:
            continue
        env = svc["environment"]
        assert env["LIVEDUB_STORE_URL"].startswith("s3+http://minio:9000/"), name
        assert not [v for v in svc.get("volumes", []) if str(v).startswith("store:")], name
        if name.startswith("worker-"):
            assert svc["depends_on"]["minio-bucket"] == {"condition": "service_completed_successfully"}, name
    assert "mb --ignore-existing" in " ".join(services()["minio-bucket"]["entrypoint"])


def test_production_services_are_there():
    assert {"redis", "minio", "mediamtx", "api", "sts", "flower", "prometheus", "grafana",
            "worker-ingest", "worker-sts", "worker-collect", "worker-remux", "worker-publish"} <= set(services())


def test_gpu_is_reserved_for_the_sts_service_only():
    devices = services()["sts"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    # the sts pool is a Socket.IO client of the service: it needs no GPU, nor does any other pool
    reserving = [name for name, svc in services().items()
                 if "reservations" in svc.get("deploy", {}).get("resources", {})]
    assert reserving == ["sts"]


def test_the_long_running_pools_run_two_workers_with_a_grace_longer_than_a_handover():
    for name in ("worker-ingest", "worker-publish"):
        svc = services()[name]
        assert svc["deploy"]["replicas"] >= 2, name
        assert int(svc["stop_grace_period"].rstrip("s")) >= 20, name  # the handover takes a few seconds


def test_flower_requires_auth_and_secrets_are_required():
    cmd = " ".join(services()["flower"]["command"])
    # credentials come from the environment (Flower reads FLOWER_BASIC_AUTH), never the command line
    assert cmd.startswith("celery -A tasks flower") and "auth" not in cmd
    assert services()["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    from flower.command import is_flower_envvar  # the package is installed with livedub

    assert is_flower_envvar("FLOWER_BASIC_AUTH")  # Flower reads it as its --basic-auth option

    for name in ("api", "worker-sts", "sts"):
        env = services()[name]["environment"]
        assert ":?" in env["LIVEDUB_HOOK_SECRET"] and ":?" in env["LIVEDUB_STS_TOKEN"]
    example = (ROOT / "compose" / ".env.example").read_text()
    for var in ("FLOWER_BASIC_AUTH", "GRAFANA_ADMIN_PASSWORD"):
        assert f"{var}=" in example


def test_prometheus_targets_match_services_and_ports():
    prom = yaml.safe_load((ROOT / "compose" / "prometheus" / "prometheus.yml").read_text())
    listen = {
        "api": services()["api"]["command"][services()["api"]["command"].index("-b") + 1].split(":")[-1],
        "sts": services()["sts"]["command"][services()["sts"]["command"].index("--port") + 1],
        "flower": next(c for c in services()["flower"]["command"] if c.startswith("--port=")).split("=")[1],
        "mediamtx": MEDIAMTX["metricsAddress"].lstrip(":"),
    }
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{svc}:{port}" for svc, port in listen.items()}
    mounts = services()["prometheus"]["volumes"]
    for path in prom["rule_files"]:
        assert any(m.split(":")[1] == path for m in mounts)


def test_alert_rules_and_grafana_panels_use_declared_metrics():
    import json

    known = declared_metrics()
    rules = yaml.safe_load((ROOT / "compose" / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash = json.loads((ROOT / "compose" / "grafana" / "dashboards" / "livedub.json").read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= known, (expr, names - known)
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("status", "glass-to-glass", "a/v offset", "per-stage p95", "queue depth"):
        assert topic in titles


ONE_SHOT = {"minio-bucket"}  # runs once at start (creates the bucket) and exits


def test_every_service_has_a_healthcheck_and_waits_for_what_it_needs_to_be_healthy():
    for name, svc in services().items():
        if name in ONE_SHOT:
            assert "restart" not in svc, name
            continue
        assert svc.get("healthcheck", {}).get("test"), name
        for dep, cond in (svc.get("depends_on") or {}).items():
            wanted = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert cond == {"condition": wanted}, (name, dep)
    assert "api" in services()["mediamtx"]["depends_on"]  # no hook fires before the API listens
    assert "sts" in services()["worker-sts"]["depends_on"]  # no segment is sent before the model is loaded


def test_every_livedub_setting_reaches_the_containers():
    livedub = [name for name, svc in services().items() if svc.get("image") in OURS]
    assert len(livedub) >= 8
    for name in livedub:
        assert services()[name]["env_file"] == [".env"], name  # compose/.env, next to the compose file


def test_mediamtx_asks_livedub_and_its_metrics_are_open_to_the_stack_only():
    assert MEDIAMTX["authMethod"] == "http" and MEDIAMTX["authHTTPAddress"].endswith("/v1/auth/mediamtx")
    assert MEDIAMTX["authHTTPExclude"] == [{"action": "metrics"}]  # publish and read always ask
    published = [p.split(":")[0] for p in services()["mediamtx"].get("ports", [])]
    assert MEDIAMTX["metricsAddress"].lstrip(":") not in published


def test_the_image_context_leaves_out_secrets_and_local_state():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "compose/.env", "compose/prometheus/flower_password"} <= ignored
    gitignored = set((ROOT / ".gitignore").read_text().split())
    assert {"compose/.env", "compose/prometheus/flower_password"} <= gitignored


def compose_config(tmp_path):
    """What `docker compose config` (or docker-compose 1.29, where the compose plugin is not installed)
    gives each service, with .env.example as compose/.env. Needs no Docker engine."""
    import shutil
    import subprocess

    work = tmp_path / "compose"
    shutil.copytree(ROOT / "compose", work)
    # as a user does: every placeholder secret replaced (livedub refuses them at start)
    example = (ROOT / "compose" / ".env.example").read_text()
    (work / ".env").write_text(re.sub(r"=change-me[\w-]*", lambda _: "=" + secrets.token_urlsafe(24), example))
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0 \
        if shutil.which("docker") else False
    tool = ["docker", "compose"] if plugin else [shutil.which("docker-compose") or "docker-compose"]
    out = subprocess.run([*tool, "-f", str(work / "docker-compose.yml"), "--env-file", str(work / ".env"), "config"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)["services"]


def test_compose_config_gives_each_livedub_container_every_setting_its_code_reads(tmp_path, monkeypatch):
    fields = {f"LIVEDUB_{k.upper()}" for k in Settings.model_fields}
    example = (ROOT / "compose" / ".env.example").read_text()
    listed = set(re.findall(r"^(LIVEDUB_\w+)=", example, re.M))
    resolved = compose_config(tmp_path)
    livedub = [n for n, s in resolved.items() if s.get("image") in OURS]
    assert len(livedub) >= 8
    for name in livedub:
        env = resolved[name]["environment"]
        got = {k for k in env if k.startswith("LIVEDUB_")}
        assert listed <= got, (name, listed - got)  # every setting of .env reaches it
        assert got <= fields, (name, got - fields)  # and each is one the code reads
        with monkeypatch.context() as m:  # and they parse, read from the environment as in the container
            for k, v in env.items():
                if k.startswith("LIVEDUB_") and v not in ("", None):
                    m.setenv(k, str(v))
            load_settings()


def test_the_sts_image_carries_the_cublas_that_ctranslate2_loads():
    import ctranslate2

    libs = Path(ctranslate2.__file__).parent.parent / "ctranslate2.libs"
    blob = b"".join(p.read_bytes() for p in libs.glob("libctranslate2*"))
    major = re.search(rb"libcublas\.so\.(\d+)", blob)
    assert major, "ctranslate2 names no libcublas: check what its CUDA build loads"
    gpu = (ROOT / "requirements" / "gpu.txt").read_text()
    assert re.search(rf"^nvidia-cublas-cu{major.group(1).decode()}==[\d.]+ \\\n\s+--hash=sha256:", gpu, re.M)
    dockerfile = (ROOT / "compose" / "Dockerfile").read_text()
    sts_stage = dockerfile.split("AS sts-deps", 1)[1].split("FROM deps AS app", 1)[0]
    assert "--require-hashes -r requirements/gpu.txt" in sts_stage
    assert "site-packages/nvidia/cublas/lib" in re.search(r"LD_LIBRARY_PATH=(\S+)", sts_stage).group(1)
    assert services()["sts"]["build"]["target"] == "sts" and services()["sts"]["image"] == "livedub-sts:latest"


def test_no_second_publisher_can_displace_a_live_one_on_mediamtx():
    for pattern, conf in MEDIAMTX["paths"].items():
        if pattern.startswith("~^live/"):
            assert conf.get("overridePublisher") is False, pattern  # MediaMTX's default is to replace it
