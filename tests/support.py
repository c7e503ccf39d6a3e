"""Test helpers: a Redis server (testcontainers, or a local redis-server), media fixtures, the stack."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis
import requests

from worker.devstack.samples import make_video

__all__ = ["make_video"]
from worker.media.procs import wait_until


class FakeClock:
    """Time that moves only when the code under test sleeps: a loop's waits take no real time."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.t

    def sleep(self, s: float) -> None:
        with self.lock:
            self.t += max(s, 0.001)


def fresh_pipeline(redis_url: str, tmp_path: Path, **settings: Any) -> tuple[Any, Any, Any, FakeClock, str]:
    """An empty Redis, a registry on a fake clock, a store, settings, and one started stream "s":
    (registry, store, settings, clock, job_id). For tests that drive a job's loop."""
    from worker.core.settings import load_settings
    from worker.state.registry import StreamRegistry
    from worker.state.store import LocalSegmentStore

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    clock = FakeClock()
    reg = StreamRegistry(client, clock=clock)
    job = reg.start("s", "test").job_id
    store = LocalSegmentStore(tmp_path / "store")
    return reg, store, load_settings(redis_url=redis_url, hook_insecure=True, **settings), clock, job


MINIO_IMAGE = "minio/minio:RELEASE.2025-04-22T22-12-26Z"  # the version compose pins


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def started_container(module: str, cls: str, *args: Any) -> Iterator[Any]:
    """A testcontainers container (``testcontainers.community.<module>`` or ``testcontainers.<module>``),
    started and stopped afterwards; None where there is no Docker engine (or no testcontainers)."""
    import importlib

    try:
        from docker.errors import DockerException

        try:
            factory = getattr(importlib.import_module(f"testcontainers.community.{module}"), cls)
        except ImportError:
            factory = getattr(importlib.import_module(f"testcontainers.{module}"), cls)
    except ImportError:  # pragma: no cover - testcontainers is a dev dependency
        yield None
        return
    try:
        container = factory(*args)
        container.start()
    except DockerException:
        yield None  # no Docker engine here: the caller falls back to a local server
        return
    try:
        yield container
    finally:
        container.stop()


@contextmanager
def redis_server() -> Iterator[str]:
    """A Redis URL: testcontainers where a Docker engine exists, else a local redis-server."""
    with started_container("redis", "RedisContainer", "redis:7-alpine") as container:
        if container is not None:
            yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
            return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("no Docker engine and no redis-server: apt-get install redis-server")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(lambda: redis.Redis.from_url(url).ping(), 10, what="redis-server")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def s3_server() -> Iterator[str]:
    """An object store URL (``s3+http://KEY:SECRET@HOST:PORT/livedub/test``) with its bucket: MinIO in
    testcontainers where a Docker engine exists, else moto's S3 server on a free local port."""
    from worker.devstack.s3server import BUCKET, S3Server, ensure_bucket

    with started_container("minio", "MinioContainer", MINIO_IMAGE) as container:
        if container is not None:
            cfg = container.get_config()
            url = f"s3+http://{cfg['access_key']}:{cfg['secret_key']}@{cfg['endpoint']}/{BUCKET}/test"
            wait_until(lambda: ensure_bucket(url), 30, what="MinIO")
            yield url
            return
    server = S3Server.new("127.0.0.1", free_port())
    proc = subprocess.Popen(server.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = server.url("test")
    try:
        wait_until(lambda: _answers(url), 20, what="moto S3 server")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _answers(url: str) -> bool:
    from worker.devstack.s3server import ensure_bucket

    try:
        return ensure_bucket(url)
    except Exception:  # noqa: BLE001 - not listening yet
        return False


def publish(path: Path, rtmp_url: str, stream_id: str, realtime: bool = True,
            key: str | None = None) -> subprocess.Popen[bytes]:
    """Publish a file to ``live/<id>/in`` like a broadcaster does (ffmpeg -re), with its stream key."""
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
    if realtime:
        args.append("-re")
    url = f"{rtmp_url}/live//{stream_id}/in" + (f"?key={key}" if key else "")
    args += ["-i", str(path), "-c", "copy", "-f", "flv", url]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@dataclass
class Stack:
    proc: subprocess.Popen[bytes]
    run_dir: Path
    state: dict[str, Any]

    @property
    def api(self) -> str:
        return str(self.state["api_url"])

    @property
    def secret(self) -> str:
        return Path(self.state["hook_secret_file"]).read_text()

    def sts_token(self) -> str:
        return Path(self.state["sts_token_file"]).read_text()

    @property
    def headers(self) -> dict[str, str]:
        """The operator token, as the stream API wants it."""
        return {"Authorization": f"Bearer {self.state['operator_token']}"}

    def key_for(self, stream_id: str, **options: Any) -> str:
        """Create the stream (or rotate the key of one that exists), as an operator does: its publish key."""
        resp = requests.post(f"{self.api}/v1/streams", json={"stream_id": stream_id, **options},
                             headers=self.headers, timeout=10)
        if resp.status_code == 409:
            resp = requests.post(f"{self.api}/v1/streams/{stream_id}/key", headers=self.headers, timeout=10)
        resp.raise_for_status()
        return str(resp.json()["publish_key"])

    def publish(self, path: Path, stream_id: str, realtime: bool = True) -> subprocess.Popen[bytes]:
        """A broadcaster with the stream's key publishing ``path``."""
        return publish(path, self.state["rtmp_url"], stream_id, realtime, key=self.key_for(stream_id))

    def stream(self, stream_id: str) -> dict[str, Any]:
        resp = requests.get(f"{self.api}/v1/streams/{stream_id}", timeout=5, headers=self.headers)
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body

    def wait_state(self, stream_id: str, states: set[str], timeout_s: float) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            rec = self.stream(stream_id)
            return rec if rec["state"] in states else None

        result: dict[str, Any] = wait_until(check, timeout_s, 0.2, f"{stream_id} to be {states}")
        return result

    def processes(self) -> list[psutil.Process]:
        """Every process on the machine that belongs to this stack (by run dir or worker tag)."""
        tag = next(iter(self.state["worker_names"].values())).split("@")[0].split("-")[-1]
        marks = (str(self.run_dir), f"-{tag}@", self.state["api_url"].split("//")[1])
        found = []
        for p in psutil.process_iter(["cmdline", "pid"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if p.info["pid"] != self.proc.pid and any(m in cmd for m in marks):
                found.append(p)
        return found


@contextmanager
def local_stack(run_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[Stack]:
    """``livedub up --free-ports`` as a user runs it; stopped with SIGTERM, then checked for orphans."""
    state_file = run_dir / "state.json"
    log = open(run_dir.parent / f"{run_dir.name}-up.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "up", "--free-ports", "--run-dir", str(run_dir),
         "--state-file", str(state_file), *extra],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"livedub up exited {proc.returncode}: {Path(log.name).read_text()[-2000:]}")
        return state_file.exists()

    try:
        wait_until(ready, 90, 0.2, "livedub up")
        stack = Stack(proc, run_dir, json.loads(state_file.read_text()))
        yield stack
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def dub_report(stack: Stack, video: Path, out: Path, sid: str, timeout_s: float = 200) -> dict[str, Any]:
    """Run `livedub dub` against a stack, as a user would; its JSON report."""
    proc = subprocess.run([sys.executable, "-m", "worker.cli", "dub", str(video), "-o", str(out), "--state-file",
                           str(stack.run_dir / "state.json"), "--stream-id", sid],
                          capture_output=True, text=True, timeout=timeout_s)
    assert proc.stdout, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def wait_gone(procs: list[psutil.Process], timeout_s: float = 10) -> list[psutil.Process]:
    """Processes of ``procs`` still alive after ``timeout_s``."""
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@contextmanager
def sts_server(*args: str, token: str | None = "sts-test-token-0123", port: int | None = None) -> Iterator[str]:
    """`livedub sts` as a real process (on a free port unless given); yields its URL. Its output goes to a
    file, never a pipe nobody reads (a chatty server would block on a full pipe)."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if k != "LIVEDUB_STS_TOKEN"}
    if token:
        env["LIVEDUB_STS_TOKEN"] = token
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, after the process
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "sts", "--port", str(port), *args], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"livedub sts exited {proc.returncode}: {log.read().decode()[-2000:]}")
        return requests.get(f"{url}/health", timeout=1).status_code == 200

    try:
        wait_until(ready, 60, 0.1, "livedub sts")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
