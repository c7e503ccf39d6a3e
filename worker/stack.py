"""`livedub up`: the whole local stack as real child processes, started in order, stopped in reverse.

redis-server -> API (gunicorn) -> nginx-rtmp (its hooks call the API) -> Celery workers (one per
queue) -> Flower. Each is started, then polled until ready, with a deadline.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from tasks.queues import ALL_QUEUES, INGEST, PUBLISH
from worker import nginx_conf
from worker.procs import ProcessRunner, stop_process, stop_process_nowait, wait_until

log = logging.getLogger(__name__)
# Long-lived per-stream jobs wait on ffmpeg: threads. CPU stages: processes.
POOL_KIND = {INGEST: ("threads", 16), PUBLISH: ("threads", 16)}
DEFAULT_POOL = ("prefork", 2)
# glibc raises its mmap threshold (up to 32 MB) the first time a large mmapped block is freed, and its
# trim threshold to twice that: from then on every thread's arena keeps megabytes of freed memory, and
# the thread-pool workers' RSS grows for minutes. A fixed threshold (its default) turns that off.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class StackConfig:
    run_dir: Path
    rtmp_port: int = 1935
    api_port: int = 8080
    http_port: int = 8081
    redis_port: int = 6379
    flower_port: int = 5555
    flower: bool = False
    redis_url: str | None = None  # external Redis: start none
    hook_secret: str | None = None
    sts_port: int = 8765
    engine: str = "offline"  # the STS engine livedub up starts: offline | echo
    sts_url: str | None = None  # an STS service that already runs: start none
    sts_token: str | None = None
    host: str = "127.0.0.1"
    extra_env: dict[str, str] = field(default_factory=dict)

    def resolve_ports(self) -> None:
        """0 means "pick a free port", so stacks can run side by side."""
        for name in ("rtmp_port", "api_port", "http_port", "redis_port", "flower_port", "sts_port"):
            if getattr(self, name) == 0:
                setattr(self, name, free_port(self.host))


@dataclass
class Child:
    name: str
    args: list[str]
    proc: subprocess.Popen[bytes]
    stop_signal: signal.Signals = signal.SIGTERM
    env: dict[str, str] = field(default_factory=dict)
    restarts: int = 0


class LocalStack:
    def __init__(self, cfg: StackConfig, runner: ProcessRunner | None = None) -> None:
        self.cfg = cfg
        self.runner = runner or ProcessRunner()
        self.children: list[Child] = []
        self.tag = uuid.uuid4().hex[:6]
        self.secret = cfg.hook_secret or secrets.token_hex(16)
        # With no STS URL, livedub up runs the service and makes a random key for both sides.
        self.sts_token = cfg.sts_token if cfg.sts_url else (cfg.sts_token or secrets.token_hex(16))

    # urls -------------------------------------------------------------------
    @property
    def redis_url(self) -> str:
        return self.cfg.redis_url or f"redis://{self.cfg.host}:{self.cfg.redis_port}/0"

    @property
    def sts_url(self) -> str:
        return self.cfg.sts_url or f"http://{self.cfg.host}:{self.cfg.sts_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.api_port}"

    @property
    def rtmp_url(self) -> str:
        return f"rtmp://{self.cfg.host}:{self.cfg.rtmp_port}"

    def state(self) -> dict[str, Any]:
        return {
            "api_url": self.api_url,
            "rtmp_url": self.rtmp_url,
            "redis_url": self.redis_url,
            "sts_url": self.sts_url,
            "engine": None if self.cfg.sts_url else self.cfg.engine,
            "flower_url": f"http://{self.cfg.host}:{self.cfg.flower_port}" if self.cfg.flower else None,
            "stat_url": f"http://{self.cfg.host}:{self.cfg.http_port}/stat",
            "ingest_url_template": f"{self.rtmp_url}/live//<id>/in",
            "output_url_template": f"{self.rtmp_url}/live//<id>/out",
            "dashboard_url": f"{self.api_url}/dashboard",
            "hook_secret_file": str(self.cfg.run_dir / "hook_secret"),
            "sts_token_file": str(self.cfg.run_dir / "sts_token") if self.sts_token else None,
            "worker_names": {q: self.worker_name(q) for q in ALL_QUEUES},
            "pid": os.getpid(),
        }

    def worker_name(self, queue: str) -> str:
        return f"{queue}-{self.tag}@{socket.gethostname()}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            LIVEDUB_REDIS_URL=self.redis_url,
            LIVEDUB_HOOK_SECRET=self.secret,
            LIVEDUB_RTMP_URL=self.rtmp_url,
            LIVEDUB_MEDIA_SERVER="nginx-rtmp",
            LIVEDUB_STORE_DIR=str(self.cfg.run_dir / "store"),
            LIVEDUB_STS_URL=self.sts_url,
            PYTHONUNBUFFERED="1",
        )
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
        (cfg.run_dir / "logs").mkdir(exist_ok=True)
        for name, value in (("hook_secret", self.secret), ("sts_token", self.sts_token)):
            if value:
                (cfg.run_dir / name).write_text(value)
                (cfg.run_dir / name).chmod(0o600)
        try:
            if cfg.redis_url is None:
                self._start_redis()
            if cfg.sts_url is None:
                self._start_sts()
            self._start_api()
            self._start_nginx()
            for queue in ALL_QUEUES:
                self._start_worker(queue)
            self._wait_workers()
            if cfg.flower:
                self._start_flower()
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, args: list[str], stop_signal: signal.Signals = signal.SIGTERM,
               env: dict[str, str] | None = None) -> Child:
        child = Child(name, args, self._popen(name, args, env), stop_signal, env=env or {})
        self.children.append(child)
        return child

    def _popen(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        logf = open(self.cfg.run_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - child owns it
        proc = self.runner.start(args, env={**self.env(), **(env or {})}, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        log.info("started %s (pid %d)", name, proc.pid)
        return proc

    def restart_dead(self, max_restarts: int = 5) -> list[str]:
        """Supervise: start again any child that died (a killed worker comes back, like compose's
        ``restart: always``). Raises when one keeps dying."""
        restarted = []
        for child in self.children:
            if child.proc.poll() is None:
                continue
            if child.restarts >= max_restarts:
                raise RuntimeError(f"{child.name} died {child.restarts + 1} times; giving up")
            log.warning("%s exited (%s); restarting", child.name, child.proc.returncode)
            stop_process(child.proc, signal.SIGKILL, grace_s=1)  # reap anything left in its group
            child.proc = self._popen(child.name, child.args, child.env)
            child.restarts += 1
            restarted.append(child.name)
        return restarted

    def _wait(self, child: Child, ready: Callable[[], Any], timeout_s: float = 30) -> None:
        def check() -> Any:
            if child.proc.poll() is not None:
                logfile = self.cfg.run_dir / "logs" / f"{child.name}.log"
                raise RuntimeError(f"{child.name} exited ({child.proc.returncode}): {logfile.read_text()[-800:]}")
            return ready()

        try:
            wait_until(check, timeout_s, what=f"{child.name} to be ready")
        except TimeoutError as exc:
            if isinstance(exc.__cause__, RuntimeError):
                raise exc.__cause__ from None
            raise

    def _start_redis(self) -> None:
        binary = shutil.which("redis-server") or "redis-server"
        child = self._spawn("redis", [
            binary, "--port", str(self.cfg.redis_port), "--bind", self.cfg.host, "--save", "",
            "--appendonly", "no", "--dir", str(self.cfg.run_dir), "--daemonize", "no",
        ])
        self._wait(child, lambda: redis.Redis.from_url(self.redis_url, socket_timeout=1).ping())

    def _start_sts(self) -> None:
        child = self._spawn("sts", [
            sys.executable, "-m", "worker.cli", "sts", "--engine", self.cfg.engine, "--host", self.cfg.host,
            "--port", str(self.cfg.sts_port),
        ])
        self._wait(child, lambda: requests.get(f"{self.sts_url}/health", timeout=1).status_code == 200, 60)

    def _start_api(self) -> None:
        child = self._spawn("api", [
            sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "2", "--threads", "8",
            "-b", f"{self.cfg.host}:{self.cfg.api_port}", "--timeout", "60", "api:create_app()",
        ])
        self._wait(child, lambda: requests.get(f"{self.api_url}/health", timeout=1).status_code == 200)

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
        path.write_text(nginx_conf.render(conf))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        child = self._spawn("nginx", [binary, "-p", str(run_dir.resolve()), "-c", str(path.resolve())],
                            stop_signal=signal.SIGQUIT)
        self._wait(child, lambda: port_open(self.cfg.host, self.cfg.rtmp_port))

    def _start_worker(self, queue: str) -> None:
        pool, concurrency = POOL_KIND.get(queue, DEFAULT_POOL)
        self._spawn(f"worker-{queue}", [
            sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", queue, "-n", self.worker_name(queue),
            "-P", pool, "-c", str(concurrency), "-l", "info", "--without-gossip", "--without-mingle", "-E",
        ])

    def _wait_workers(self, timeout_s: float = 60) -> None:
        from celery import Celery

        from tasks.config import celery_config
        from worker.settings import load_settings

        client = Celery("livedub-up")
        client.conf.update(celery_config(load_settings(redis_url=self.redis_url)))
        wanted = {self.worker_name(q) for q in ALL_QUEUES}

        def all_up() -> bool:
            for child in self.children:
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
        child = self._spawn("flower", [
            sys.executable, "-m", "celery", "-A", "tasks", "flower", f"--address={self.cfg.host}",
            f"--port={self.cfg.flower_port}",
        ], env={"FLOWER_UNAUTHENTICATED_API": "true"})
        url = f"http://{self.cfg.host}:{self.cfg.flower_port}/"
        self._wait(child, lambda: requests.get(url, timeout=1).status_code == 200)

    def write_state(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state(), indent=2))
        tmp.replace(path)

    def stop(self) -> None:
        """Stop every child: workers (together) before the servers they talk to, newest first."""
        workers = [c for c in self.children if c.name.startswith(("worker-", "flower"))]
        for child in workers:
            stop_process_nowait(child.proc, child.stop_signal)
        for child in reversed(workers):
            self._stop(child)
        while self.children:
            self._stop(self.children[-1])

    def _stop(self, child: Child) -> None:
        code = stop_process(child.proc, child.stop_signal, grace_s=15)
        self.children.remove(child)
        log.info("stopped %s (exit %s)", child.name, code)
