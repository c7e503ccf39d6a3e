"""The local stack's child processes: started with their logs, restarted when they die, stopped in order."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.media.procs import ProcessRunner, stop_process, stop_process_nowait, wait_until

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def write_private(path: Path, text: str) -> None:
    """A file only its owner reads (0600), created anew: never through a link someone left in its place."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class Child:
    name: str
    args: list[str]
    proc: subprocess.Popen[bytes]
    stop_signal: signal.Signals = signal.SIGTERM
    env: dict[str, str] = field(default_factory=dict)
    restarts: int = 0
    without: tuple[str, ...] = ()  # variables of the stack's environment this child must not get


class Children:
    """Every child the stack started, each logging to ``<log_dir>/<name>.log``."""

    def __init__(self, log_dir: Path, env: Callable[[], dict[str, str]], runner: ProcessRunner | None = None) -> None:
        self.log_dir = log_dir
        self.env = env
        self.runner = runner or ProcessRunner()
        self.children: list[Child] = []

    def spawn(self, name: str, args: list[str], stop_signal: signal.Signals = signal.SIGTERM,
               env: dict[str, str] | None = None, without: tuple[str, ...] = ()) -> Child:
        child = Child(name, args, self._popen(name, args, env, without), stop_signal, env=env or {}, without=without)
        self.children.append(child)
        return child

    def _popen(self, name: str, args: list[str], env: dict[str, str] | None = None,
               without: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
        logf = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - child owns it
        full = {k: v for k, v in {**self.env(), **(env or {})}.items() if k not in without}
        proc = self.runner.start(args, env=full, stdout=logf, stderr=subprocess.STDOUT)
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
            child.proc = self._popen(child.name, child.args, child.env, child.without)
            child.restarts += 1
            restarted.append(child.name)
        return restarted

    def wait(self, child: Child, ready: Callable[[], Any], timeout_s: float = 30) -> None:
        def check() -> Any:
            if child.proc.poll() is not None:
                logfile = self.log_dir / f"{child.name}.log"
                raise RuntimeError(f"{child.name} exited ({child.proc.returncode}): {logfile.read_text()[-800:]}")
            return ready()

        try:
            wait_until(check, timeout_s, what=f"{child.name} to be ready")
        except TimeoutError as exc:
            if isinstance(exc.__cause__, RuntimeError):
                raise exc.__cause__ from None
            raise

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
