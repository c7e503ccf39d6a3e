"""The STS service: an async python-socketio server on aiohttp.

Socket handlers only parse, check and queue; engine work runs in a thread pool off the event loop,
so acks go out at once and pings never time out. Work is shared fairly across streams through one
bounded queue, and each stream's results go out in ``sequence_number`` order.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import socketio
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from worker.sts.audio import AudioError, check_audio
from worker.sts.bounds import LastUnits
from worker.sts.engines import Engine
from worker.sts.metrics import StsCollector
from worker.sts.protocol import (
    AUDIO_FORMATS,
    DEFAULT_NAMESPACE,
    PROTOCOL_VERSION,
    SAMPLE_RATES,
    Backpressure,
    ErrorEvent,
    FragmentAck,
    FragmentData,
    StreamComplete,
    StreamInit,
    StreamReady,
    StreamRef,
    validation_message,
)
from worker.sts.sessions import FairQueue, QueueFull, StreamSession, backpressure, relief
from worker.sts.work import Work, process, wait_limit_ms

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (socket id, stream id)
MONITOR_ROOM = "monitor"
URGENT_S = 1.0  # a fragment whose client stops waiting within this goes before the streams' turns


class StsServer:
    def __init__(self, engine: Engine, token: str | None, namespace: str = DEFAULT_NAMESPACE, workers: int = 1,
                 queue_capacity: int = 64, max_audio_bytes: int = 10 * 1024 * 1024,
                 queue_bytes: int = 256 * 1024 * 1024, max_sessions_per_connection: int = 64) -> None:
        self.engine = engine
        self.token = token
        self.ns = namespace
        self.workers = workers
        self.max_audio_bytes = max_audio_bytes
        self.queue = FairQueue(queue_capacity, queue_bytes, due=lambda work: work.due_at, urgent_s=URGENT_S)
        self.max_sessions = max_sessions_per_connection  # streams one connection may hold open
        self.sessions: dict[Key, StreamSession] = {}
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sts-engine")
        self.last_units = LastUnits()
        self.cond: asyncio.Condition | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.stats: dict[str, int] = {}
        self.load_failed = asyncio.Event()
        self.registry = CollectorRegistry()
        self.registry.register(StsCollector(self))
        # base64 grows audio by 4/3; leave room so audio just over the limit gets a clean error.
        # cors_allowed_origins left at its default (same origin only): a web page elsewhere cannot open a
        # socket to the service ([] would turn the Origin check off). Workers send no Origin and connect.
        self.sio = socketio.AsyncServer(async_mode="aiohttp", namespaces=[namespace],
                                        max_http_buffer_size=max_audio_bytes * 2 + 65536)
        handlers = {"connect": self.on_connect, "disconnect": self.on_disconnect, "stream:init": self.on_init,
                    "fragment:data": self.on_fragment, "fragment:ack": self.on_client_ack,
                    "stream:pause": self.on_pause, "stream:resume": self.on_resume, "stream:end": self.on_end,
                    "monitor:subscribe": self.on_monitor}
        for event, handler in handlers.items():
            self.sio.on(event, handler, namespace=namespace)

    def capabilities(self) -> dict[str, Any]:
        return {"protocol_version": PROTOCOL_VERSION, "engine": self.engine.name, "formats": list(AUDIO_FORMATS),
                "sample_rates_hz": list(SAMPLE_RATES), "channels": [1, 2], "binary_data": True,
                "max_audio_bytes": self.max_audio_bytes, "namespace": self.ns,
                "speech_bounds": self.engine.speech_bounds}

    # app -------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        self.sio.attach(app)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, _: web.Application) -> None:
        self.cond = asyncio.Condition()
        self.load_failed = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.run_in_executor(self.executor, self._load_engine, loop)
        self.tasks = [asyncio.create_task(self._work_loop()) for _ in range(self.workers)]

    def _load_engine(self, loop: asyncio.AbstractEventLoop) -> None:
        """Load the models off the event loop (/health says "loading" meanwhile); a failure is final."""
        try:
            self.engine.load()
        except Exception:
            log.exception("engine %s failed to load", self.engine.name)
            loop.call_soon_threadsafe(self.load_failed.set)

    async def _cleanup(self, _: web.Application) -> None:
        for task in self.tasks:
            task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def health(self, _: web.Request) -> web.Response:
        """200 once the engine can serve; 503 with the reason while its models load or after they failed."""
        why = self.engine.readiness()
        status = "ok" if why is None else ("unavailable" if self.load_failed.is_set() else "loading")
        body = {"status": status, **({"reason": why} if why else {}), **self.engine.health(),
                "streams": len(self.sessions), "queue_depth": self.queue.size,
                "inflight": sum(s.inflight for s in self.sessions.values()), "namespace": self.ns}
        return web.json_response(body, status=200 if why is None else 503)

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain", charset="utf-8")

    # helpers ---------------------------------------------------------------
    async def _error(self, sid: str, code: str, message: str, retryable: bool = False, severity: str = "error",
                     stream_id: str | None = None, fragment_id: str | None = None) -> None:
        event = ErrorEvent(code=code, message=message, retryable=retryable, severity=severity,
                           stream_id=stream_id, fragment_id=fragment_id)
        await self.sio.emit("error", event.to_wire(), to=sid, namespace=self.ns)

    async def _backpressure(self, sid: str, bp: Backpressure) -> None:
        if bp.action != "none":
            session = self.sessions.get((sid, bp.stream_id))
            if session is not None:
                session.throttled = True
        self.stats[f"bp_{bp.action}"] = self.stats.get(f"bp_{bp.action}", 0) + 1
        await self.sio.emit("backpressure", bp.to_wire(), to=sid, namespace=self.ns)

    async def _notify(self) -> None:
        assert self.cond is not None
        async with self.cond:
            self.cond.notify_all()

    # handlers --------------------------------------------------------------
    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if self.token is None:
            return
        given = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), self.token.encode()):
            raise socketio.exceptions.ConnectionRefusedError("unauthorized: missing or wrong STS token")

    async def on_disconnect(self, sid: str, *_: Any) -> None:
        for key in [k for k in self.sessions if k[0] == sid]:
            del self.sessions[key]
            self.queue.drop(key)

    async def on_init(self, sid: str, data: Any) -> None:
        try:
            init = StreamInit.model_validate(data)
        except ValidationError as exc:
            await self._error(sid, "INVALID_CONFIG", f"stream:init: {validation_message(exc)}")
            return
        problem = self.engine.check(init.config)
        if problem is not None:
            await self._error(sid, problem.code, problem.message, stream_id=init.stream_id)
            return
        key = (sid, init.stream_id)
        old = self.sessions.get(key)
        if old is None and sum(1 for k in self.sessions if k[0] == sid) >= self.max_sessions:
            await self._error(sid, "TOO_MANY_STREAMS", f"this connection has {self.max_sessions} streams open "
                              "(stream:end one first)", stream_id=init.stream_id)
            return
        if old is not None and old.inflight:
            await self._error(sid, "STREAM_BUSY", "stream is already initialised with work in flight",
                              stream_id=init.stream_id)
            return
        session = StreamSession(sid, init.stream_id, uuid.uuid4().hex, init.config, init.max_inflight,
                                init.timeout_ms)
        self.sessions[key] = session
        ready = StreamReady(stream_id=init.stream_id, session_id=session.session_id, max_inflight=init.max_inflight,
                            capabilities=self.capabilities())
        await self.sio.emit("stream:ready", ready.to_wire(), to=sid, namespace=self.ns)

    async def on_fragment(self, sid: str, data: Any) -> None:
        fid = data.get("fragment_id") if isinstance(data, dict) and isinstance(data.get("fragment_id"), str) else None
        try:
            frag = FragmentData.model_validate(data)
        except ValidationError as exc:
            await self._error(sid, "INVALID_CONFIG", f"fragment:data: {validation_message(exc)}", fragment_id=fid)
            return
        key = (sid, frag.stream_id)
        session = self.sessions.get(key)
        err = functools.partial(self._error, sid, stream_id=frag.stream_id, fragment_id=frag.fragment_id)
        if session is None:
            await err("STREAM_NOT_FOUND", "unknown stream: send stream:init first")
            return
        if session.ending:
            await err("STREAM_ENDING", "stream:end was received; no more fragments")
            return
        try:
            raw = check_audio(frag.audio, self.max_audio_bytes)
        except AudioError as exc:
            await err(exc.code, str(exc))
            return
        chunk_ms = session.config.chunk_duration_ms
        if session.inflight >= 2 * session.max_inflight:
            bp = backpressure(frag.stream_id, session.inflight + 1, session.max_inflight, self.queue.size, chunk_ms)
            if bp is not None:
                await self._backpressure(sid, bp)
            await err("BACKPRESSURE", f"{session.inflight} fragments in flight: wait for results",
                              retryable=True, severity="warning")
            return
        if frag.sequence_number in session.pending:
            await err("INVALID_SEQUENCE", f"sequence_number {frag.sequence_number} is in flight")
            return
        try:
            now = time.monotonic()
            due = now + wait_limit_ms(session.timeout_ms, frag.metadata) / 1000
            position = self.queue.put(key, Work(frag, raw, now, frag.audio.data is not None, due), len(raw))
        except QueueFull as exc:
            await err("QUEUE_FULL", str(exc), retryable=True, severity="warning")
            return
        session.accept(frag.sequence_number, frag.audio.duration_ms)
        ack = FragmentAck(fragment_id=frag.fragment_id, status="queued", queue_position=position,
                          timestamp=int(time.time() * 1000))
        await self.sio.emit("fragment:ack", ack.to_wire(), to=sid, namespace=self.ns)
        bp = backpressure(frag.stream_id, session.inflight, session.max_inflight, self.queue.size, chunk_ms)
        if bp is not None:
            await self._backpressure(sid, bp)
        await self._notify()

    async def on_monitor(self, sid: str, data: Any = None) -> None:
        """An authenticated observer (a dashboard, a test) gets a copy of every fragment:processed."""
        await self.sio.enter_room(sid, MONITOR_ROOM, namespace=self.ns)

    async def on_client_ack(self, sid: str, data: Any) -> None:
        try:
            FragmentAck.model_validate(data)
        except ValidationError as exc:
            await self._error(sid, "INVALID_CONFIG", f"fragment:ack: {validation_message(exc)}")

    async def _session_for(self, sid: str, data: Any, event: str) -> StreamSession | None:
        try:
            ref = StreamRef.model_validate(data)
        except ValidationError as exc:
            await self._error(sid, "INVALID_CONFIG", f"{event}: {validation_message(exc)}")
            return None
        session = self.sessions.get((sid, ref.stream_id))
        if session is None:
            await self._error(sid, "STREAM_NOT_FOUND", f"{event}: unknown stream", stream_id=ref.stream_id)
        return session

    async def on_pause(self, sid: str, data: Any) -> None:
        if (session := await self._session_for(sid, data, "stream:pause")) is not None:
            session.paused = True
            self.queue.paused.add((sid, session.stream_id))

    async def on_resume(self, sid: str, data: Any) -> None:
        if (session := await self._session_for(sid, data, "stream:resume")) is not None:
            session.paused = False
            self.queue.paused.discard((sid, session.stream_id))
            await self._notify()

    async def on_end(self, sid: str, data: Any) -> None:
        if (session := await self._session_for(sid, data, "stream:end")) is not None:
            session.ending = True
            self.queue.paused.discard((sid, session.stream_id))
            await self._notify()
            await self._maybe_complete(session)

    async def _maybe_complete(self, session: StreamSession) -> None:
        if not session.ending or session.inflight:
            return
        done = StreamComplete(stream_id=session.stream_id, total_fragments=session.total_fragments,
                              total_duration_ms=round(session.total_duration_ms), statistics=session.statistics())
        self.sessions.pop((session.sid, session.stream_id), None)
        self.queue.drop((session.sid, session.stream_id))
        await self.sio.emit("stream:complete", done.to_wire(), to=session.sid, namespace=self.ns)

    # work ------------------------------------------------------------------
    async def _work_loop(self) -> None:
        assert self.cond is not None
        loop = asyncio.get_running_loop()
        while True:
            async with self.cond:
                await self.cond.wait_for(self.queue.ready)
                popped, waiting = self.queue.pop(time.monotonic()), self.queue.size
            if popped is None:
                continue
            key, work = popped
            session = self.sessions.get(key)  # type: ignore[call-overload]
            if session is None:
                continue  # the client went away
            result = await loop.run_in_executor(self.executor, process, self.engine, session, work, waiting,
                                                self.last_units)
            if self.sessions.get(key) is not session:  # type: ignore[call-overload]
                continue
            self.stats[result.status] = self.stats.get(result.status, 0) + 1
            for ready in session.complete(result):
                wire = ready.to_wire()
                await self.sio.emit("fragment:processed", wire, to=session.sid, namespace=self.ns)
                await self.sio.emit("fragment:processed", wire, room=MONITOR_ROOM, skip_sid=session.sid,
                                    namespace=self.ns)
            if session.throttled and session.inflight <= session.max_inflight:  # the load fell back: go on
                session.throttled = False
                await self._backpressure(session.sid, relief(session.stream_id, session.inflight,
                                                              self.queue.size))
            await self._maybe_complete(session)
