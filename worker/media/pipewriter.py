"""A thread that writes to a child's stdin, so a caller is never blocked by a slow reader."""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
from collections.abc import Callable
from typing import BinaryIO

CHUNK = 256 * 1024


class PipeWriter:
    """Streams pieces (open files or object bodies, closed once written) to ffmpeg's stdin on its own
    thread, one queued piece at a time."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.q: queue.Queue[BinaryIO | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="publisher-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.proc.stdin is not None
        while (source := self.q.get()) is not None:
            try:
                with source:
                    shutil.copyfileobj(source, self.proc.stdin, CHUNK)
                self.proc.stdin.flush()
            except Exception as exc:  # noqa: BLE001 - a broken pipe or a failed read: the publisher sees it
                self.error = exc
                return

    def put(self, data: BinaryIO | None, tick: Callable[[], object]) -> None:
        """Queue a piece, calling ``tick`` (the heartbeat) while the writer is still busy."""
        while True:
            try:
                self.q.put(data, timeout=0.5)
                return
            except queue.Full:
                if self.error is not None or not self.thread.is_alive():
                    if data is not None:
                        data.close()
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
