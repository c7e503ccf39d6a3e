"""Child processes (ffmpeg, servers) behind one class that tests can replace.

Every child gets its own process group and ``PR_SET_PDEATHSIG``: if its parent dies, even by
SIGKILL, the kernel kills the child, so no ffmpeg or server is orphaned.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: best effort
        pass


class ProcessRunner:
    """Starts child processes. Substitute it in tests to observe or fake the commands."""

    def start(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
    ) -> subprocess.Popen[bytes]:
        if isinstance(args, str):  # never a shell string
            raise TypeError("commands are argument lists, not strings")
        return subprocess.Popen(
            list(args),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - needed for PDEATHSIG
        )


def stop_process(
    proc: subprocess.Popen[bytes], first: signal.Signals = signal.SIGTERM, grace_s: float = 5.0
) -> int:
    """Signal the child's whole process group, wait ``grace_s``, then SIGKILL it. Returns the code."""
    if proc.poll() is None:
        _signal_group(proc, first)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=5)
    else:  # the leader is gone; make sure nothing it started lingers
        _signal_group(proc, signal.SIGKILL)
    return proc.returncode


def stop_process_nowait(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> None:
    """Signal the child's process group and return at once (stop several children together)."""
    if proc.poll() is None:
        _signal_group(proc, sig)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.1, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, or raise TimeoutError after the deadline."""
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - readiness probes fail until ready
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}") from last_exc
        time.sleep(interval_s)
