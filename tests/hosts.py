"""Hosts for multi-host tests: each a Linux network namespace with a 10.x address on a veth pair, and
its own mount namespace in which the other hosts' directories are hidden under an empty tmpfs.

Traffic stays on the veth between the namespaces this module made; nothing is routed anywhere else.
Needs root (CI runs as root); ``netns_available()`` says whether this machine allows it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.media.procs import wait_until


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def netns_available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root to make network namespaces"
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "needs iproute2 and util-linux (ip, unshare)"
    return None


@dataclass
class Host:
    name: str  # the network namespace
    addr: str
    dir: Path  # its private directory: run dir, logs, state file
    hidden: list[Path] = field(default_factory=list)  # the other hosts' directories
    up: subprocess.Popen[bytes] | None = None
    up_args: list[str] = field(default_factory=list)

    def wrap(self, args: list[str]) -> list[str]:
        """Run ``args`` on this host: in its network namespace, in a mount namespace of its own where
        the other hosts' directories are empty."""
        mounts = " && ".join(f"mount -t tmpfs hidden {_q(p)}" for p in self.hidden) or "true"
        return ["ip", "netns", "exec", self.name, "unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", f'{mounts} && exec "$@"', "sh", *args]

    def run(self, args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.wrap(args), capture_output=True, text=True, timeout=timeout)

    def popen(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as f:
            return subprocess.Popen(self.wrap(args), stdout=f, stderr=subprocess.STDOUT)

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    def start(self, *up_args: str, timeout_s: float = 90) -> dict[str, Any]:
        """``livedub up`` on this host; its state file once it is ready."""
        self.up_args = list(up_args) or self.up_args
        self.state_file.unlink(missing_ok=True)
        self.up = self.popen([sys.executable, "-m", "worker.cli", "up", "--free-ports", "--bind", self.addr,
                              "--run-dir", str(self.dir / "run"), "--state-file", str(self.state_file),
                              *self.up_args], self.dir / "up.log")

        def ready() -> bool:
            if self.up is not None and self.up.poll() is not None:
                raise RuntimeError(f"{self.name}: livedub up exited {self.up.returncode}: "
                                   f"{(self.dir / 'up.log').read_text()[-2000:]}")
            return self.state_file.exists()

        wait_until(ready, timeout_s, 0.2, f"livedub up on {self.name}")
        state: dict[str, Any] = json.loads(self.state_file.read_text())
        return state

    def stop(self, timeout_s: float = 60) -> None:
        if self.up is not None and self.up.poll() is None:
            self.up.send_signal(signal.SIGTERM)
            try:
                self.up.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.up.kill()
                self.up.wait(10)


def _q(p: Path) -> str:
    return "'" + str(p).replace("'", "'\\''") + "'"


@contextmanager
def two_hosts(root: Path) -> Iterator[tuple[Host, Host]]:
    """Hosts A (10.N.M.1) and B (10.N.M.2), joined by a veth pair; removed afterwards."""
    tag = secrets.token_hex(3)
    a, b = f"lda{tag}", f"ldb{tag}"
    net = f"10.{100 + int(tag[:2], 16) % 100}.{int(tag[2:4], 16)}"
    hosts = (Host(a, f"{net}.1", root / "a"), Host(b, f"{net}.2", root / "b"))
    hosts[0].hidden, hosts[1].hidden = [hosts[1].dir], [hosts[0].dir]
    for h in hosts:
        h.dir.mkdir(parents=True, exist_ok=True)
    try:
        for h in hosts:
            _ip("netns", "add", h.name)
            _ip("-n", h.name, "link", "set", "lo", "up")
        _ip("link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}")
        for h, dev in zip(hosts, (f"va{tag}", f"vb{tag}"), strict=True):
            _ip("link", "set", dev, "netns", h.name)
            _ip("-n", h.name, "addr", "add", f"{h.addr}/24", "dev", dev)
            _ip("-n", h.name, "link", "set", dev, "up")
        yield hosts
    finally:
        for h in hosts:
            h.stop()
        for h in hosts:
            subprocess.run(["ip", "netns", "del", h.name], capture_output=True, timeout=10)
