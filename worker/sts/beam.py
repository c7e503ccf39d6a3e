"""Whisper's beam, chosen per fragment: the configured (wide) beam when the engine has the time for it,
greedy when it does not.

A beam of 5 mishears far fewer words than greedy decoding (``bench.asr``, the news script one sentence a
unit, 2 CPU cores: WER 0.077 against 0.192) for about a quarter more ASR time (272 ms a unit p50 against
217). That is worth it for a unit whose client waits long enough, and not for one that would then miss
its deadline: fixed mode's 6 s fragments on a loaded 2-core host, or any fragment while others queue.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# A wide chain against the recent ones: ASR is about a third of a unit's chain (ASR, MT, TTS), and a beam
# of 5 adds a quarter to the ASR (bench.asr).
WIDE_COST = 1.1
HEADROOM = 1.25  # the room left must be this many times the expected chain (the answer's way back, a busier CPU)
SAMPLES = 20  # the last chains the estimate is made from


@dataclass(frozen=True)
class Room:
    """What the server knows when it hands the engine a fragment."""

    remaining_ms: float | None = None  # until the client stops waiting for the answer; None: not said
    waiting: int = 0  # fragments queued behind this one


def decode_beam(configured: int, room: Room, recent_ms: list[float], running: int) -> int:
    """The beam for one fragment: ``configured`` when nothing else waits or runs (``running`` counts
    this fragment) and the room left holds ``HEADROOM`` times the expected chain (``WIDE_COST`` times the
    slowest recent one; unknown before the first), else 1. Pure."""
    if room.waiting > 0 or running > 1:
        return 1
    if room.remaining_ms is not None and recent_ms and room.remaining_ms < HEADROOM * WIDE_COST * max(recent_ms):
        return 1
    return configured


class BeamChooser:
    """Thread-safe: counts the fragments running and keeps the last chains' times."""

    def __init__(self, configured: int) -> None:
        self.configured = configured
        self._recent: deque[float] = deque(maxlen=SAMPLES)
        self._running = 0
        self._lock = threading.Lock()

    @contextmanager
    def chain(self, room: Room | None) -> Iterator[int]:
        """Around one fragment's whole chain (ASR, MT, TTS): yields its beam and records how long it took."""
        started = time.perf_counter()
        with self._lock:
            self._running += 1
            beam = decode_beam(self.configured, room or Room(), list(self._recent), self._running)
        try:
            yield beam
        except BaseException:
            with self._lock:
                self._running -= 1
            raise
        with self._lock:
            self._running -= 1
            self._recent.append((time.perf_counter() - started) * 1000)
