"""A seed-like worker: the STS client side as the seed's media worker drives it (issue 13's facts).

No auth; ``stream:init`` with the seed's defaults (English to Chinese, m4a); each fragment raw ADTS
AAC labelled ``m4a`` in ``data_base64`` with an int Unix-ms timestamp and int duration; every reply
checked against v1.0's strict types; backpressure obeyed: ``pause``/``slow_down`` hold the next
fragment until an ``action: none`` arrives.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from typing import Any

import socketio

from tests.seedlike.models import Ack, Backpressure, Complete, Processed


class SeedLikeWorker:
    def __init__(self, url: str) -> None:
        self.url = url
        self.sio = socketio.Client(reconnection=False)
        self.cond = threading.Condition()
        self.ready: dict[str, Any] | None = None
        self.processed: list[Processed] = []
        self.acks: list[Ack] = []
        self.backpressure: list[Backpressure] = []
        self.errors: list[dict[str, Any]] = []
        self.complete: Complete | None = None
        self.paused = False
        for event, handler in {"stream:ready": self._ready, "fragment:processed": self._processed,
                               "fragment:ack": self._ack, "backpressure": self._bp, "error": self._error,
                               "stream:complete": self._complete}.items():
            self.sio.on(event, handler)

    def _set(self, fn: Any) -> None:
        with self.cond:
            fn()
            self.cond.notify_all()

    def _ready(self, d: dict[str, Any]) -> None:
        self._set(lambda: setattr(self, "ready", d))

    def _processed(self, d: dict[str, Any]) -> None:
        self._set(lambda: self.processed.append(Processed.model_validate(d)))  # strict: ints, no bytes

    def _ack(self, d: dict[str, Any]) -> None:
        self._set(lambda: self.acks.append(Ack.model_validate(d)))

    def _bp(self, d: dict[str, Any]) -> None:
        bp = Backpressure.model_validate(d)

        def apply() -> None:
            self.backpressure.append(bp)
            self.paused = bp.action != "none"
        self._set(apply)

    def _error(self, d: dict[str, Any]) -> None:
        self._set(lambda: self.errors.append(d))

    def _complete(self, d: dict[str, Any]) -> None:
        self._set(lambda: setattr(self, "complete", Complete.model_validate(d)))

    def wait(self, what: Any, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not (value := what()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"seed-like worker: timed out ({self.errors[-3:]})")
                self.cond.wait(0.1)
            return value

    def run(self, stream_id: str, fragments: list[bytes], duration_ms: int, max_inflight: int = 3,
            timeout_s: float = 30, pace: float = 1.0) -> None:
        """Init, send a fragment every ``pace`` x its duration, as a live worker does (holding while told to
        pause), end; wait for stream:complete."""
        self.sio.connect(self.url, transports=["websocket"], wait_timeout=5)
        self.sio.emit("stream:init", {"stream_id": stream_id, "worker_id": f"seed-{uuid.uuid4().hex[:6]}",
                                      "config": {"source_language": "en", "target_language": "zh",
                                                 "voice_profile": "default", "chunk_duration_ms": duration_ms,
                                                 "sample_rate_hz": 48000, "channels": 1, "format": "m4a"},
                                      "max_inflight": max_inflight, "timeout_ms": 8000})
        self.wait(lambda: self.ready, 10)
        started = time.monotonic()
        for seq, data in enumerate(fragments):
            due = started + seq * duration_ms / 1000 * pace
            self.wait(lambda due=due: time.monotonic() >= due or None, timeout_s)
            self.wait(lambda: not self.paused or None, timeout_s)
            self.sio.emit("fragment:data", {
                "fragment_id": f"{stream_id}-{seq}", "stream_id": stream_id, "sequence_number": seq,
                "timestamp": int(time.time() * 1000),
                "audio": {"format": "m4a", "sample_rate_hz": 48000, "channels": 1, "duration_ms": duration_ms,
                          "data_base64": base64.b64encode(data).decode()}})
        self.wait(lambda: len(self.processed) >= len(fragments) or None, timeout_s)
        self.sio.emit("stream:end", {"stream_id": stream_id})
        self.wait(lambda: self.complete, timeout_s)

    def close(self) -> None:
        if self.sio.connected:
            self.sio.disconnect()
