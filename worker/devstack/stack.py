"""`livedub up`: the stack, or any subset of its roles, as real child processes, started in order,
stopped in reverse.

redis-server -> S3 store -> STS service -> API (gunicorn) -> nginx-rtmp (its hooks call the API) ->
Celery workers (N per pool) -> Flower. Each is started, then polled until ready, with a deadline. With
``--only``, a host runs some roles and points at the others with their URLs (``--redis-url``,
``--store-url``, ``--rtmp-url``, ``--sts-url``): pools on separate hosts.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from worker.core.queues import ALL_QUEUES, INGEST, PUBLISH
from worker.devstack import nginx_conf
from worker.devstack.children import Children, free_port, port_open, write_private
from worker.devstack.roles import DEFAULT_ROLES
from worker.devstack.s3server import S3Server, ensure_bucket
from worker.media.procs import ProcessRunner, wait_until

log = logging.getLogger(__name__)
# Long-lived per-stream jobs wait on ffmpeg: threads. CPU stages: processes.
POOL_KIND = {INGEST: ("threads", 16), PUBLISH: ("threads", 16)}
DEFAULT_POOL = ("prefork", 2)
# glibc raises its mmap threshold (up to 32 MB) the first time a large mmapped block is freed, and its
# trim threshold to twice that: from then on every thread's arena keeps megabytes of freed memory, and
# the thread-pool workers' RSS grows for minutes. A fixed threshold (its default) turns that off.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}
# The STS service and the store server need none of the pipeline's secrets: they never get them.
PRIVATE_TO_PIPELINE = ("LIVEDUB_HOOK_SECRET", "LIVEDUB_REDIS_URL", "LIVEDUB_STORE_URL", "LIVEDUB_OPERATOR_TOKEN",
                       "LIVEDUB_VIEWER_TOKEN", "LIVEDUB_INTERNAL_KEY")


@dataclass
class StackConfig:
    run_dir: Path
    rtmp_port: int = 1935
    api_port: int = 8080
    http_port: int = 8081
    redis_port: int = 6379
    flower_port: int = 5555
    flower: bool = False
    store_port: int = 9000
    roles: frozenset[str] = DEFAULT_ROLES
    scale: dict[str, int] = field(default_factory=dict)
    redis_url: str | None = None  # external Redis: start none
    store_url: str | None = None  # external object store (or file:///path)
    rtmp_url: str | None = None  # external media server
    hook_secret: str | None = None
    sts_port: int = 8765
    engine: str = "offline"  # the STS engine livedub up starts: offline | echo
    sts_url: str | None = None  # an STS service that already runs: start none
    sts_token: str | None = None
    host: str = "127.0.0.1"
    open_publishing: bool = False  # any publish starts a job, no stream key (local rehearsal)
    extra_env: dict[str, str] = field(default_factory=dict)

    def resolve_ports(self) -> None:
        """0 means "pick a free port", so stacks can run side by side."""
        for name in ("rtmp_port", "api_port", "http_port", "redis_port", "flower_port", "sts_port", "store_port"):
            if getattr(self, name) == 0:
                setattr(self, name, free_port(self.host))


class LocalStack:
    def __init__(self, cfg: StackConfig, runner: ProcessRunner | None = None) -> None:
        self.cfg = cfg
        self.procs = Children(cfg.run_dir / "logs", self.env, runner)
        self.tag = uuid.uuid4().hex[:6]
        self.secret = cfg.hook_secret or secrets.token_hex(16)
        # With no STS URL, livedub up runs the service and makes a random key for both sides.
        self.sts_token = cfg.sts_token if cfg.sts_url else (cfg.sts_token or secrets.token_hex(16))
        self.redis_password = secrets.token_hex(16)
        # Tokens for the API and livedub's own media-server key: from the environment (several hosts
        # share them), else made here.
        self.operator_token = os.environ.get("LIVEDUB_OPERATOR_TOKEN") or secrets.token_urlsafe(24)
        self.viewer_token = os.environ.get("LIVEDUB_VIEWER_TOKEN") or secrets.token_urlsafe(24)
        self.internal_key = os.environ.get("LIVEDUB_INTERNAL_KEY") or secrets.token_urlsafe(24)
        self.s3_keys = S3Server.new(cfg.host, 0)  # its credentials; the port is known once resolved
        self.workers: list[str] = []

    def runs(self, role: str) -> bool:
        return role in self.cfg.roles

    # urls -------------------------------------------------------------------
    @property
    def redis_url(self) -> str:
        return self.cfg.redis_url or f"redis://:{self.redis_password}@{self.cfg.host}:{self.cfg.redis_port}/0"

    @property
    def store_url(self) -> str | None:
        """None: the local directory (one machine)."""
        if self.cfg.store_url:
            return self.cfg.store_url
        return self.s3.url() if self.runs("store") else None

    @property
    def s3(self) -> S3Server:
        return S3Server(self.cfg.host, self.cfg.store_port, self.s3_keys.access_key, self.s3_keys.secret_key)

    @property
    def sts_url(self) -> str:
        return self.cfg.sts_url or f"http://{self.cfg.host}:{self.cfg.sts_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.api_port}"

    @property
    def rtmp_url(self) -> str:
        return self.cfg.rtmp_url or f"rtmp://{self.cfg.host}:{self.cfg.rtmp_port}"

    def state(self) -> dict[str, Any]:
        """Every URL another host needs, complete (credentials included), and the other secrets."""
        return {
            "roles": sorted(self.cfg.roles),
            "api_url": self.api_url,
            "rtmp_url": self.rtmp_url,
            "redis_url": self.redis_url,
            "store_url": self.store_url or (self.cfg.run_dir / "store").resolve().as_uri(),
            "sts_url": self.sts_url,
            "hook_secret": self.secret,
            "sts_token": self.sts_token,
            "operator_token": self.operator_token,
            "viewer_token": self.viewer_token,
            "internal_key": self.internal_key,
            "open_publishing": self.cfg.open_publishing,
            "engine": None if self.cfg.sts_url else self.cfg.engine,
            "flower_url": f"http://{self.cfg.host}:{self.cfg.flower_port}" if self.cfg.flower else None,
            "stat_url": f"http://{self.cfg.host}:{self.cfg.http_port}/stat",
            "ingest_url_template": f"{self.rtmp_url}/live//<id>/in?key=<publish_key>",
            "output_url_template": f"{self.rtmp_url}/live//<id>/out",
            "dashboard_url": f"{self.api_url}/dashboard",
            "hook_secret_file": str(self.cfg.run_dir / "hook_secret"),
            "sts_token_file": str(self.cfg.run_dir / "sts_token") if self.sts_token else None,
            "worker_names": {q: self.worker_name(q) for q in ALL_QUEUES if self.runs(q)},
            "workers": list(self.workers),
            "pid": os.getpid(),
        }

    def worker_name(self, queue: str, i: int = 0) -> str:
        return f"{queue}{i or ''}-{self.tag}@{socket.gethostname()}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            LIVEDUB_REDIS_URL=self.redis_url,
            LIVEDUB_HOOK_SECRET=self.secret,
            LIVEDUB_OPERATOR_TOKEN=self.operator_token,
            LIVEDUB_VIEWER_TOKEN=self.viewer_token,
            LIVEDUB_INTERNAL_KEY=self.internal_key,
            LIVEDUB_OPEN_PUBLISHING="true" if self.cfg.open_publishing else "false",
            LIVEDUB_RTMP_URL=self.rtmp_url,
            LIVEDUB_MEDIA_SERVER="nginx-rtmp",
            LIVEDUB_STORE_DIR=str(self.cfg.run_dir / "store"),
            LIVEDUB_STS_URL=self.sts_url,
            PYTHONUNBUFFERED="1",
        )
        if self.store_url:
            env["LIVEDUB_STORE_URL"] = self.store_url
        # This host's publish pool puts the output on the media server from its bound address.
        env["LIVEDUB_PUBLISHER_NETWORKS"] = json.dumps(["127.0.0.0/8", "::1/128", f"{self.cfg.host}/32"]
                                                       if ":" not in self.cfg.host else ["::1/128", self.cfg.host])
        for k, v in MALLOC_ENV.items():
            env.setdefault(k, v)
        if self.sts_token:
            env["LIVEDUB_STS_TOKEN"] = self.sts_token
        if self.cfg.engine == "offline" and not self.cfg.sts_url:
            # Real ASR -> MT -> TTS on 2 CPU cores needs about a second per segment: more budget.
            env.setdefault("LIVEDUB_LATENCY_BUDGET_S", "3.0")
        env.update(self.cfg.extra_env)
        return env

    # lifecycle --------------------------------------------------------------
    def start(self) -> None:
        cfg = self.cfg
        cfg.resolve_ports()
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        cfg.run_dir.chmod(0o700)  # secrets, the store and the logs: the owner's only
        (cfg.run_dir / "logs").mkdir(exist_ok=True)
        for name, value in (("hook_secret", self.secret), ("sts_token", self.sts_token),
                            ("operator_token", self.operator_token)):
            if value:
                write_private(cfg.run_dir / name, value)
        try:
            if self.runs("redis") and cfg.redis_url is None:
                self._start_redis()
            if self.runs("store") and cfg.store_url is None:
                self._start_store()
            if self.runs("sts-service") and cfg.sts_url is None:
                self._start_sts()
            if self.runs("api"):
                self._start_api()
            if self.runs("media-server") and cfg.rtmp_url is None:
                self._start_nginx()
            for queue in ALL_QUEUES:
                for i in range(cfg.scale.get(queue, 1) if self.runs(queue) else 0):
                    self._start_worker(queue, i)
            if self.workers:
                self._wait_workers()
            if cfg.flower or self.runs("flower"):
                self._start_flower()
        except BaseException:
            self.stop()
            raise

    def _start_redis(self) -> None:
        binary = shutil.which("redis-server") or "redis-server"
        child = self.procs.spawn("redis", [
            binary, "--port", str(self.cfg.redis_port), "--bind", self.cfg.host, "--save", "",
            "--appendonly", "no", "--dir", str(self.cfg.run_dir), "--daemonize", "no",
            "--requirepass", self.redis_password,
        ])
        self.procs.wait(child, lambda: redis.Redis.from_url(self.redis_url, socket_timeout=1).ping())

    def _start_store(self) -> None:
        child = self.procs.spawn("store", self.s3.args(), without=PRIVATE_TO_PIPELINE + ("LIVEDUB_STS_TOKEN",))
        url = self.store_url
        assert url is not None

        def ready() -> bool:
            try:
                return ensure_bucket(url)
            except Exception:  # noqa: BLE001 - not listening yet
                return False

        self.procs.wait(child, ready)

    def _start_sts(self) -> None:
        child = self.procs.spawn("sts", [
            sys.executable, "-m", "worker.cli", "sts", "--engine", self.cfg.engine, "--host", self.cfg.host,
            "--port", str(self.cfg.sts_port),
        ], without=PRIVATE_TO_PIPELINE)
        self.procs.wait(child, lambda: requests.get(f"{self.sts_url}/health", timeout=1).status_code == 200, 60)

    def _start_api(self) -> None:
        child = self.procs.spawn("api", [
            sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "2", "--threads", "8",
            "-b", f"{self.cfg.host}:{self.cfg.api_port}", "--timeout", "60", "api:create_app()",
        ])
        self.procs.wait(child, lambda: requests.get(f"{self.api_url}/health", timeout=1).status_code == 200)

    def _start_nginx(self) -> None:
        run_dir = self.cfg.run_dir
        for d in nginx_conf.temp_dirs(run_dir):
            d.mkdir(parents=True, exist_ok=True)
        conf = nginx_conf.NginxConfig(
            run_dir=run_dir.resolve(), rtmp_port=self.cfg.rtmp_port, http_port=self.cfg.http_port,
            api_url=self.api_url, secret=self.secret, rtmp_module=nginx_conf.find_rtmp_module(),
            bind=self.cfg.host,
        )
        path = run_dir / "nginx.conf"
        write_private(path, nginx_conf.render(conf))  # it carries the hook secret
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        child = self.procs.spawn("nginx", [binary, "-p", str(run_dir.resolve()), "-c", str(path.resolve())],
                            stop_signal=signal.SIGQUIT)
        self.procs.wait(child, lambda: port_open(self.cfg.host, self.cfg.rtmp_port))

    def _start_worker(self, queue: str, i: int = 0) -> None:
        pool, concurrency = POOL_KIND.get(queue, DEFAULT_POOL)
        name = self.worker_name(queue, i)
        self.workers.append(name)
        self.procs.spawn(f"worker-{queue}{i or ''}", [
            sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", queue, "-n", name,
            "-P", pool, "-c", str(concurrency), "-l", "info", "--without-gossip", "--without-mingle", "-E",
        ])

    def _wait_workers(self, timeout_s: float = 60) -> None:
        from celery import Celery

        client = Celery("livedub-up", broker=self.redis_url)  # only to ping the workers (-A tasks)
        wanted = set(self.workers)

        def all_up() -> bool:
            for child in self.procs.children:
                if child.name.startswith("worker-") and child.proc.poll() is not None:
                    raise RuntimeError(f"{child.name} exited ({child.proc.returncode})")
            replies = client.control.ping(timeout=0.5) or []
            return wanted <= {name for r in replies for name in r}

        try:
            wait_until(all_up, timeout_s, interval_s=0.3, what="Celery workers on every queue")
        finally:
            client.close()

    def _start_flower(self) -> None:
        # Local stack: Flower binds to 127.0.0.1 and its API is open (flower 2.2 answers 401 on /api/*
        # otherwise). compose/ runs it with basic auth.
        child = self.procs.spawn("flower", [
            sys.executable, "-m", "celery", "-A", "tasks", "flower", f"--address={self.cfg.host}",
            f"--port={self.cfg.flower_port}",
        ], env={"FLOWER_UNAUTHENTICATED_API": "true"})
        url = f"http://{self.cfg.host}:{self.cfg.flower_port}/"
        self.procs.wait(child, lambda: requests.get(url, timeout=1).status_code == 200)

    def write_state(self, path: Path) -> None:
        """The state file holds credentials: readable by its owner only."""
        tmp = path.with_suffix(".tmp")
        write_private(tmp, json.dumps(self.state(), indent=2))
        tmp.replace(path)

    def restart_dead(self, max_restarts: int = 5) -> list[str]:
        return self.procs.restart_dead(max_restarts)

    def stop(self) -> None:
        self.procs.stop()
