"""Apertium kept running: one pipeline per translation mode, in null-flush mode, for the engine's life.

``apertium -u MODE`` starts a dozen processes per call, each loading its transducers: 180 ms a unit
idle and up to 450 ms on two busy cores, a third of the STS service's work there. Apertium's own ``-z``
(null flush) mode lets one pipeline translate one text after another: each ends with a NUL, and every
stage flushes at it. The text formatters (``apertium-destxt``/``apertium-retxt``) do not null-flush, so
they run per call, as ``apertium`` runs them (two small processes, a few ms); the output is the same as
``apertium -u MODE``'s.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from pathlib import Path

from worker.sts.audio import AudioError

DEFAULT_DATADIR = "/usr/share/apertium"


def mode_file(mode: str, datadir: str | None = None) -> Path:
    """Where ``apertium`` finds a mode (``APERTIUM_DATADIR``, as the script reads it)."""
    if not mode or "/" in mode or mode.startswith("."):
        raise ValueError(f"not a mode name: {mode!r}")
    return Path(datadir or os.environ.get("APERTIUM_DATADIR") or DEFAULT_DATADIR) / "modes" / f"{mode}.mode"


class ApertiumPipe:
    """One running null-flush pipeline for ``mode``; ``translate`` is serialised by a lock. A pipeline
    that died or hung past ``timeout_s`` is killed (its whole process group) and started afresh on the
    next call."""

    def __init__(self, mode: str, timeout_s: float = 30.0, datadir: str | None = None) -> None:
        self.mode = mode
        self.timeout_s = timeout_s
        self.datadir = datadir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[bytes]:
        path = mode_file(self.mode, self.datadir)
        script = subprocess.run(["apertium-wblank-mode", "-z", str(path)], capture_output=True, text=True,
                                timeout=30)
        if script.returncode != 0 or not script.stdout.strip():
            raise AudioError("TRANSLATION_FAILED", f"apertium mode {self.mode} unreadable: {script.stderr[-200:]}")
        # $1 -n: no '*' before unknown words (apertium -u); $2 empty: the tagger's default output.
        self.starts += 1
        return subprocess.Popen(["bash", "-c", script.stdout, "apertium", "-n", ""], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()

    def translate(self, text: str) -> str:
        """``text`` as ``apertium -u MODE`` translates it (formatting, blank lines and all)."""
        deadline = time.monotonic() + self.timeout_s
        unformatted = _run(["apertium-destxt"], text.encode(), self.timeout_s)
        with self._lock:
            if self.proc is None or self.proc.poll() is not None:
                self.close()
                self.proc = self._start()
            try:
                raw = _exchange(self.proc, unformatted.replace(b"\0", b" ") + b"\0", deadline)
            except (OSError, TimeoutError) as exc:
                self.close()
                raise AudioError("TRANSLATION_FAILED", f"apertium {self.mode}: {exc}") from exc
        return _run(["apertium-retxt"], raw, max(1.0, deadline - time.monotonic())).decode()


def _run(cmd: list[str], data: bytes, timeout_s: float) -> bytes:
    out = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout_s)
    if out.returncode != 0:
        raise AudioError("TRANSLATION_FAILED", f"{cmd[0]} failed: {out.stderr.decode(errors='replace')[-200:]}")
    return out.stdout


def _exchange(proc: subprocess.Popen[bytes], data: bytes, deadline: float) -> bytes:
    """Write one NUL-ended text, read up to the NUL that ends its translation."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(data)
    proc.stdin.flush()
    buf = bytearray()
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not buf.endswith(b"\0"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise TimeoutError("no answer in time")
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise OSError("the pipeline ended")
            buf += chunk
    return bytes(buf[:-1])


class Translator:
    """The pipelines an engine keeps, one per mode, started on first use."""

    def __init__(self, timeout_s: float = 30.0, datadir: str | None = None) -> None:
        self.timeout_s = timeout_s
        self.datadir = datadir
        self.pipes: dict[str, ApertiumPipe] = {}
        self._lock = threading.Lock()

    def run(self, text: str, chain: tuple[str, ...]) -> str:
        for mode in chain:
            with self._lock:
                pipe = self.pipes.setdefault(mode, ApertiumPipe(mode, self.timeout_s, self.datadir))
            text = pipe.translate(text)
        return text

    def close(self) -> None:
        for pipe in self.pipes.values():
            pipe.close()
