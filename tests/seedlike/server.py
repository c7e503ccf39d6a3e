"""A seed-like STS server (echo): what the seed project's servers accept and send, as issue 13 lists
it. No auth; v1.0's strict payloads (a bad one gets INVALID_CONFIG); capabilities without binary data
or formats; dubbed audio echoed in the format it came in; null fields in failed results and metadata;
backpressure with a null delay; optionally errors with no fragment_id, as the seed's full server sends.

    python -m tests.seedlike.server --port N [--fail SEQ] [--error-without-id SEQ] [--backpressure]
        [--relabel FORMAT]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import socketio
from aiohttp import web
from pydantic import ValidationError

from tests.seedlike.models import Fragment, Init


class SeedLikeServer:
    def __init__(self, fail: set[int], error_without_id: set[int], backpressure: bool,
                 relabel: str | None = None) -> None:
        self.fail, self.error_without_id, self.bp, self.relabel = fail, error_without_id, backpressure, relabel
        self.sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=[])
        self.streams: dict[str, dict[str, Any]] = {}
        self.received: list[dict[str, Any]] = []
        for event, handler in {"stream:init": self.init, "fragment:data": self.fragment,
                               "stream:end": self.end}.items():
            self.sio.on(event, handler)

    async def error(self, sid: str, code: str, message: str, **ids: str) -> None:
        await self.sio.emit("error", {"code": code, "message": message, "severity": "error", "retryable": False,
                                      **ids}, to=sid)

    async def init(self, sid: str, data: Any) -> None:
        try:
            init = Init.model_validate(data)
        except ValidationError as exc:
            await self.error(sid, "INVALID_CONFIG", f"Invalid stream:init payload: {exc.error_count()} validation "
                                                    f"errors: {exc.errors()[0]['loc']}")
            return
        self.streams[init.stream_id] = {"max_inflight": init.max_inflight, "count": 0, "ms": 0}
        await self.sio.emit("stream:ready", {"stream_id": init.stream_id, "session_id": uuid.uuid4().hex,
                                             "max_inflight": init.max_inflight,
                                             "capabilities": {"batch_processing": False, "async_delivery": True}},
                            to=sid)

    async def fragment(self, sid: str, data: Any) -> None:
        self.received.append(data)
        fid = data.get("fragment_id") if isinstance(data, dict) else None
        try:
            frag = Fragment.model_validate(data)
        except ValidationError as exc:
            await self.error(sid, "INVALID_CONFIG", f"Invalid fragment:data payload: {exc.error_count()} validation "
                                                    f"errors: {exc.errors()[0]['loc']}", **({"fragment_id": fid}
                                                                                            if fid else {}))
            return
        stream = self.streams.get(frag.stream_id)
        if stream is None:
            await self.error(sid, "STREAM_NOT_FOUND", "no such stream", fragment_id=frag.fragment_id)
            return
        await self.sio.emit("fragment:ack", {"fragment_id": frag.fragment_id, "status": "queued",
                                             "timestamp": int(time.time() * 1000)}, to=sid)
        if self.bp:
            await self.sio.emit("backpressure", {"stream_id": frag.stream_id, "severity": "low",
                                                 "current_inflight": 1, "queue_depth": 0, "action": "none",
                                                 "recommended_delay_ms": None}, to=sid)
        stream["count"] += 1
        stream["ms"] += frag.audio.duration_ms
        await asyncio.sleep(0.05)
        if frag.sequence_number in self.error_without_id:  # the full server's shape: no fragment_id
            await self.error(sid, "MODEL_ERROR", "model failed", stream_id=frag.stream_id)
            return
        base = {"fragment_id": frag.fragment_id, "stream_id": frag.stream_id,
                "sequence_number": frag.sequence_number, "processing_time_ms": 50}
        if frag.sequence_number in self.fail:
            out = {**base, "status": "failed", "dubbed_audio": None, "transcript": None, "translated_text": None,
                   "stage_timings": None, "metadata": None,
                   "error": {"code": "MODEL_ERROR", "message": "tts failed", "stage": None, "retryable": False}}
        else:
            dub = frag.audio.model_dump() | ({"format": self.relabel} if self.relabel else {})
            out = {**base, "status": "success", "dubbed_audio": dub, "transcript": "echo",
                   "translated_text": "echo", "stage_timings": {"asr_ms": 10, "translation_ms": 10, "tts_ms": 10},
                   "error": None, "metadata": None}
        await self.sio.emit("fragment:processed", out, to=sid)

    async def end(self, sid: str, data: Any) -> None:
        sid_stream = data.get("stream_id") if isinstance(data, dict) else None
        stream = self.streams.pop(sid_stream or "", {"count": 0, "ms": 0})
        await self.sio.emit("stream:complete", {
            "stream_id": sid_stream, "total_fragments": stream["count"], "total_duration_ms": stream["ms"],
            "statistics": {"success_count": stream["count"], "partial_count": 0, "failed_count": 0,
                           "avg_processing_time_ms": 50.0, "p95_processing_time_ms": 50.0}}, to=sid)


def app(server: SeedLikeServer) -> web.Application:
    application = web.Application()
    server.sio.attach(application)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    application.router.add_get("/health", health)
    return application


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--fail", type=int, action="append", default=[])
    ap.add_argument("--error-without-id", type=int, action="append", default=[])
    ap.add_argument("--backpressure", action="store_true")
    ap.add_argument("--relabel", help="label every dub with this format (one livedub may not read)")
    args = ap.parse_args()
    server = SeedLikeServer(set(args.fail), set(args.error_without_id), args.backpressure, args.relabel)
    web.run_app(app(server), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
