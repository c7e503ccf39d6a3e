"""A thread that writes to a child's stdin, so a caller is never blocked by a slow reader."""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Callable


class PipeWriter:
    """Writes pieces to ffmpeg's stdin on its own thread, one queued piece at a time."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.q: queue.Queue[bytes | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="publisher-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.proc.stdin is not None
        while (data := self.q.get()) is not None:
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as exc:
                self.error = exc
                return

    def put(self, data: bytes | None, tick: Callable[[], object]) -> None:
        """Queue data, calling ``tick`` (the heartbeat) while the writer is still busy."""
        while True:
            try:
                self.q.put(data, timeout=0.5)
                return
            except queue.Full:
                if self.error is not None or not self.thread.is_alive():
                    raise BrokenPipeError(str(self.error or "writer stopped")) from None
                tick()

    def finish(self, tick: Callable[[], object]) -> None:
        try:
            self.put(None, tick)
        except BrokenPipeError:
            return
        while self.thread.is_alive():
            self.thread.join(0.5)
            tick()
