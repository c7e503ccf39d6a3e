"""ffmpeg ``-progress`` readers: when did a process reach a media time."""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from operator import itemgetter
from typing import IO

_MEDIA = itemgetter(1)  # a (wall time, media time) sample's media time


class ProgressLog:
    """(wall time, media time) pairs from an ffmpeg ``-progress pipe:1`` stream, read on a thread."""

    def __init__(self, stream: IO[bytes], clock: Callable[[], float] = time.time) -> None:
        self.points: list[tuple[float, float]] = []
        self.clock = clock
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            key, _, value = raw.decode(errors="replace").strip().partition("=")
            if key == "out_time_us" and value.lstrip("-").isdigit() and int(value) > 0:
                self.points.append((self.clock(), int(value) / 1e6))

    @property
    def media_s(self) -> float:
        return self.points[-1][1] if self.points else 0.0

    def forget_before(self, media_s: float) -> None:
        """Drop the samples before ``media_s`` but the last of them (kept to interpolate from): a publisher
        asks only about pieces still to come, and an hour of output is 14,400 samples. The reading thread
        only appends, so the samples cut are never the ones it writes."""
        if (i := bisect_left(self.points, media_s, key=_MEDIA)) > 1:
            del self.points[: i - 1]


def wall_at(points: list[tuple[float, float]], media_s: float) -> float | None:
    """When a progress log first reached ``media_s`` (linear between samples). A binary search: the
    publisher asks for every piece, and building the list of media times each time cost CPU in
    proportion to the output's age. Pure."""
    i = bisect_left(points, media_s, key=_MEDIA)
    if i >= len(points):
        return None
    if i == 0:
        return points[0][0] - (points[0][1] - media_s)
    (w0, m0), (w1, m1) = points[i - 1], points[i]
    return w0 + (w1 - w0) * ((media_s - m0) / (m1 - m0) if m1 > m0 else 0.0)
