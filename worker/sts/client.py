"""A synchronous STS client (python-socketio ``Client``), as the STS-dispatch stage uses it.

One connection carries any number of streams; results are matched to fragments by ``fragment_id``.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from worker.sts.protocol import (
    DEFAULT_NAMESPACE,
    Backpressure,
    ErrorEvent,
    FragmentData,
    FragmentProcessed,
    StreamComplete,
    StreamInit,
    StreamReady,
)


class StsError(RuntimeError):
    def __init__(self, code: str, message: str, retryable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retryable = retryable


def preload() -> None:
    """Load python-socketio now: a worker that will make clients does it before it forks its pool."""
    import socketio  # noqa: F401


class StsClient:
    def __init__(self, url: str, token: str | None = None, namespace: str = DEFAULT_NAMESPACE,
                 connect_timeout_s: float = 5.0) -> None:
        self.url = url
        self.token = token
        self.ns = namespace
        self.connect_timeout_s = connect_timeout_s
        import socketio  # here, not at import: only the STS-dispatch pool's processes load it (0.4 s of CPU)

        self.sio = socketio.Client(reconnection=False)
        self.cond = threading.Condition()
        self.ready: dict[str, StreamReady] = {}
        self.processed: dict[str, FragmentProcessed] = {}
        self.acks: dict[str, dict[str, Any]] = {}
        self.complete: dict[str, StreamComplete] = {}
        self.errors: list[ErrorEvent] = []
        self.backpressure: list[Backpressure] = []
        self.by_fragment_error: dict[str, ErrorEvent] = {}
        self.inflight: dict[str, set[str]] = defaultdict(set)  # stream id -> fragment ids awaiting a result
        self.events: dict[str, int] = defaultdict(int)
        for event, handler in {"stream:ready": self._on_ready, "fragment:ack": self._on_ack,
                               "fragment:processed": self._on_processed, "stream:complete": self._on_complete,
                               "backpressure": self._on_backpressure, "error": self._on_error}.items():
            self.sio.on(event, handler, namespace=namespace)
        self.refusal: str | None = None
        self.sio.on("connect_error", self._on_connect_error, namespace=namespace)

    # connection ------------------------------------------------------------
    def connect(self) -> StsClient:
        import socketio

        try:
            self.sio.connect(self.url, auth={"token": self.token} if self.token else None, namespaces=[self.ns],
                             transports=["websocket"], wait_timeout=self.connect_timeout_s)
        except socketio.exceptions.ConnectionError as exc:
            text = str(exc)
            if self.refusal is not None and "unauthorized" in self.refusal.lower():
                raise StsError("UNAUTHORIZED", f"the STS service refused the connection: {self.refusal}") from exc
            if self.refusal is not None or "namespace" in text.lower():
                raise StsError("NAMESPACE_MISMATCH", f"the STS service at {self.url} does not serve namespace "
                               f"{self.ns!r} (livedub serves '/' unless --namespace says otherwise): {text}",
                               retryable=False) from exc
            raise StsError("UNREACHABLE", f"cannot connect to the STS service at {self.url}: {text}",
                           retryable=True) from exc
        return self

    @property
    def connected(self) -> bool:
        return bool(self.sio.connected)

    def close(self) -> None:
        if self.sio.connected:
            self.sio.disconnect()

    def __enter__(self) -> StsClient:
        return self.connect()

    def __exit__(self, *_: object) -> None:
        self.close()

    # handlers (socket thread) ----------------------------------------------
    def _store(self, table: dict[str, Any], key: str, value: Any) -> None:
        with self.cond:
            table[key] = value
            self.cond.notify_all()

    def _on_connect_error(self, data: Any = None) -> None:
        self.refusal = data.get("message", str(data)) if isinstance(data, dict) else str(data)

    def _on_ready(self, data: dict[str, Any]) -> None:
        self._store(self.ready, data["stream_id"], StreamReady.model_validate(data))

    def _on_ack(self, data: dict[str, Any]) -> None:
        self._store(self.acks, data["fragment_id"], data)

    def _on_processed(self, data: dict[str, Any]) -> None:
        self._store(self.processed, data["fragment_id"], FragmentProcessed.model_validate(data))

    def _on_complete(self, data: dict[str, Any]) -> None:
        self._store(self.complete, data["stream_id"], StreamComplete.model_validate(data))

    def _on_backpressure(self, data: dict[str, Any]) -> None:
        with self.cond:
            self.backpressure.append(Backpressure.model_validate(data))

    def _on_error(self, data: dict[str, Any]) -> None:
        err = ErrorEvent.model_validate(data)
        with self.cond:
            self.errors.append(err)
            for fid in self._errored(err):
                self.by_fragment_error[fid] = err
            self.cond.notify_all()

    def _errored(self, err: ErrorEvent) -> set[str]:
        """The fragments an error is about. The seed's servers send some errors with no fragment_id:
        the one fragment in flight (of its stream, if named) when that is unambiguous, else all of them
        fail fast rather than each waiting out its deadline."""
        if err.fragment_id:
            return {err.fragment_id}
        if err.stream_id:
            return set(self.inflight.get(err.stream_id, ()))
        return set().union(*self.inflight.values()) if self.inflight else set()

    # calls -----------------------------------------------------------------
    def _wait(self, predicate: Any, timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                value = predicate()
                if value is not None:
                    return value
                left = deadline - time.monotonic()
                if left <= 0 or not self.sio.connected:
                    raise TimeoutError(f"no {what} within {timeout_s:.1f}s"
                                       + ("" if self.sio.connected else " (disconnected)"))
                self.cond.wait(min(left, 0.2))

    def init_stream(self, init: StreamInit, timeout_s: float = 5.0) -> StreamReady:
        n_errors = len(self.errors)
        self.ready.pop(init.stream_id, None)
        self.sio.emit("stream:init", init.to_wire(), namespace=self.ns)

        def answer() -> StreamReady | ErrorEvent | None:
            if init.stream_id in self.ready:
                return self.ready[init.stream_id]
            return next((e for e in self.errors[n_errors:] if e.stream_id in (init.stream_id, None)), None)

        result = self._wait(answer, timeout_s, "stream:ready")
        if isinstance(result, ErrorEvent):
            raise StsError(result.code, result.message, result.retryable)
        return result

    def capabilities(self, stream_id: str) -> dict[str, Any]:
        ready = self.ready.get(stream_id)
        return ready.capabilities if ready is not None else {}

    def send_fragment(self, frag: FragmentData) -> None:
        payload = frag.model_dump(mode="python", exclude_none=True)
        with self.cond:
            self.inflight[frag.stream_id].add(frag.fragment_id)
        self.sio.emit("fragment:data", payload, namespace=self.ns)

    def wait_processed(self, fragment_id: str, timeout_s: float) -> FragmentProcessed:
        """The fragment's result; StsError if the server refused it; TimeoutError at the deadline."""

        def answer() -> FragmentProcessed | ErrorEvent | None:
            return self.processed.pop(fragment_id, None) or self.by_fragment_error.pop(fragment_id, None)

        try:
            result = self._wait(answer, timeout_s, f"fragment:processed for {fragment_id}")
        finally:
            with self.cond:
                for fids in self.inflight.values():
                    fids.discard(fragment_id)
        if isinstance(result, ErrorEvent):
            raise StsError(result.code, result.message, result.retryable)
        return result

    def drain_backpressure(self) -> list[Backpressure]:
        """Backpressure events received since the last call."""
        with self.cond:
            events, self.backpressure = self.backpressure, []
        return events

    def emit(self, event: str, data: Any) -> None:
        self.sio.emit(event, data, namespace=self.ns)

    def end_stream(self, stream_id: str, timeout_s: float = 30.0) -> StreamComplete:
        self.sio.emit("stream:end", {"stream_id": stream_id}, namespace=self.ns)
        result: StreamComplete = self._wait(lambda: self.complete.get(stream_id), timeout_s, "stream:complete")
        return result
