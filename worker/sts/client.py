"""A blocking STS client, as the STS-dispatch stage uses it, on python-socketio's ``AsyncClient``.

One connection carries any number of streams; results are matched to fragments by ``fragment_id``.

The socket runs on one event-loop thread per process (:class:`SocketLoop`); callers block on its
futures. Not the synchronous ``socketio.Client``: that one handles each incoming Engine.IO message on a
thread of its own, so a binary event's header and its attachment can be handled out of order
("Unexpected binary attachment"), and that answer is lost. The asyncio client handles them in order.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import defaultdict
from collections.abc import Coroutine
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

KEPT = 256  # acks and errors kept for callers to look at: a connection lives as long as its worker process


class StsError(RuntimeError):
    def __init__(self, code: str, message: str, retryable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retryable = retryable


def preload() -> None:
    """Load python-socketio's asyncio client now: a worker that will make clients does it before it
    forks its pool. Only the import: the loop thread starts in the process that uses it."""
    import aiohttp  # noqa: F401  (the asyncio client's websocket transport)
    import socketio  # noqa: F401


class SocketLoop:
    """An asyncio loop on a daemon thread, where this process's Socket.IO clients run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sts-socket-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout_s: float) -> Any:
        """Run ``coro`` on the loop; its result, or its exception; TimeoutError after ``timeout_s``."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise


_LOOP: tuple[int, SocketLoop] | None = None
_LOOP_LOCK = threading.Lock()


def socket_loop() -> SocketLoop:
    """This process's loop, started on first use (a forked child starts its own: threads do not fork)."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None or _LOOP[0] != os.getpid():
            _LOOP = (os.getpid(), SocketLoop())
        return _LOOP[1]


class StsClient:
    def __init__(self, url: str, token: str | None = None, namespace: str = DEFAULT_NAMESPACE,
                 connect_timeout_s: float = 5.0, loop: SocketLoop | None = None) -> None:
        self.url = url
        self.token = token
        self.ns = namespace
        self.connect_timeout_s = connect_timeout_s
        import socketio  # here, not at import: only the STS-dispatch pool's processes load it (0.4 s of CPU)

        self.io = loop or socket_loop()
        self.sio = socketio.AsyncClient(reconnection=False)
        self.cond = threading.Condition()
        self.ready: dict[str, StreamReady] = {}
        self.processed: dict[str, FragmentProcessed] = {}
        self.acks: dict[str, dict[str, Any]] = {}
        self.complete: dict[str, StreamComplete] = {}
        self.errors: list[ErrorEvent] = []  # the last KEPT to KEPT * 2
        self.errors_dropped = 0  # errors before those
        self.late_answers = 0  # results for fragments no caller waited for any more, dropped
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
            self.io.run(self.sio.connect(self.url, auth={"token": self.token} if self.token else None,
                                         namespaces=[self.ns], transports=["websocket"],
                                         wait_timeout=self.connect_timeout_s), self.connect_timeout_s + 5.0)
        except (socketio.exceptions.ConnectionError, TimeoutError) as exc:
            self.close()  # releases the transport's HTTP session
            raise self._refusal(str(exc) or "no answer in time") from exc
        return self

    def _refusal(self, text: str) -> StsError:
        """Why a connect failed. The server answered and refused a namespace (``connect_error`` from it:
        a bad token or a namespace it does not serve), or it was not reached at all (retryable)."""
        if "namespaces failed to connect" not in text:
            return StsError("UNREACHABLE", f"cannot connect to the STS service at {self.url}: {text}",
                            retryable=True)
        if self.refusal is not None and "unauthorized" in self.refusal.lower():
            return StsError("UNAUTHORIZED", f"the STS service refused the connection: {self.refusal}")
        return StsError("NAMESPACE_MISMATCH", f"the STS service at {self.url} does not serve namespace "
                        f"{self.ns!r} (livedub serves '/' unless --namespace says otherwise): "
                        f"{self.refusal or text}")

    @property
    def connected(self) -> bool:
        return bool(self.sio.connected)

    def close(self) -> None:
        """Disconnect if connected, and release the transport either way (safe to call twice)."""
        self.io.run(self.sio.disconnect(), 5.0)

    def __enter__(self) -> StsClient:
        return self.connect()

    def __exit__(self, *_: object) -> None:
        self.close()

    # handlers (the loop's thread; each returns at once) ----------------------------------------------
    def _store(self, table: dict[str, Any], key: str, value: Any) -> None:
        with self.cond:
            table[key] = value
            self.cond.notify_all()

    def _on_connect_error(self, data: Any = None) -> None:
        self.refusal = data.get("message", str(data)) if isinstance(data, dict) else str(data)

    def _on_ready(self, data: dict[str, Any]) -> None:
        self._store(self.ready, data["stream_id"], StreamReady.model_validate(data))

    def _on_ack(self, data: dict[str, Any]) -> None:
        with self.cond:
            self.acks[data["fragment_id"]] = data
            if len(self.acks) > KEPT:
                del self.acks[next(iter(self.acks))]

    def _on_processed(self, data: dict[str, Any]) -> None:
        """A result; dropped when its fragment was abandoned (see :meth:`abandon`)."""
        result = FragmentProcessed.model_validate(data)
        with self.cond:
            if not self._in_flight(result.fragment_id):
                self.late_answers += 1
                return
            self.processed[result.fragment_id] = result
            self.cond.notify_all()

    def _in_flight(self, fragment_id: str) -> bool:
        return any(fragment_id in fids for fids in self.inflight.values())

    def _on_complete(self, data: dict[str, Any]) -> None:
        self._store(self.complete, data["stream_id"], StreamComplete.model_validate(data))

    def _on_backpressure(self, data: dict[str, Any]) -> None:
        with self.cond:
            self.backpressure.append(Backpressure.model_validate(data))

    def _on_error(self, data: dict[str, Any]) -> None:
        err = ErrorEvent.model_validate(data)
        with self.cond:
            self.errors.append(err)
            if len(self.errors) > 2 * KEPT:
                self.errors_dropped += KEPT
                del self.errors[:KEPT]
            for fid in self._errored(err):
                if self._in_flight(fid):
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
        seen = self.errors_dropped + len(self.errors)
        self.ready.pop(init.stream_id, None)
        self.emit("stream:init", init.to_wire())

        def answer() -> StreamReady | ErrorEvent | None:
            if init.stream_id in self.ready:
                return self.ready[init.stream_id]
            since = self.errors[max(seen - self.errors_dropped, 0):]
            return next((e for e in since if e.stream_id in (init.stream_id, None)), None)

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
        self.emit("fragment:data", payload)

    def wait_processed(self, fragment_id: str, timeout_s: float) -> FragmentProcessed:
        """The fragment's result; StsError if the server refused it; TimeoutError at the deadline (the
        fragment stays in flight: wait again, or :meth:`abandon` it)."""

        def answer() -> FragmentProcessed | ErrorEvent | None:
            return self.processed.pop(fragment_id, None) or self.by_fragment_error.pop(fragment_id, None)

        result = self._wait(answer, timeout_s, f"fragment:processed for {fragment_id}")
        self.abandon(fragment_id)
        if isinstance(result, ErrorEvent):
            raise StsError(result.code, result.message, result.retryable)
        return result

    def abandon(self, fragment_id: str) -> None:
        """Nobody waits for the fragment any more: its result, if it comes later, is dropped. Kept, every
        late dub stayed in the worker's memory for the connection's life (an hour of three streams grew
        one STS-dispatch process by 63 MB, 2026-11-29)."""
        with self.cond:
            for fids in self.inflight.values():
                fids.discard(fragment_id)
            self.processed.pop(fragment_id, None)
            self.by_fragment_error.pop(fragment_id, None)

    def drain_backpressure(self) -> list[Backpressure]:
        """Backpressure events received since the last call."""
        with self.cond:
            events, self.backpressure = self.backpressure, []
        return events

    def emit(self, event: str, data: Any, timeout_s: float = 5.0) -> None:
        """Queue an event on the socket (a binary event's packets go out together, in order)."""
        self.io.run(self.sio.emit(event, data, namespace=self.ns), timeout_s)

    def call(self, event: str, data: Any, timeout_s: float = 5.0) -> Any:
        """Emit and wait for the server's acknowledgement; its data."""
        return self.io.run(self.sio.call(event, data, namespace=self.ns, timeout=timeout_s), timeout_s + 1.0)

    def end_stream(self, stream_id: str, timeout_s: float = 30.0) -> StreamComplete:
        self.emit("stream:end", {"stream_id": stream_id})
        result: StreamComplete = self._wait(lambda: self.complete.get(stream_id), timeout_s, "stream:complete")
        return result
