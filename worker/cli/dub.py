"""`livedub dub`: a rehearsal any user can run against a running stack.

Publish a file in real time, record the dubbed output, measure glass-to-glass delay from both ends'
ffmpeg progress, and report what came out.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from pydantic import BaseModel, Field

from worker.cli.recorder import Recorder
from worker.core.models import StreamRecord
from worker.core.naming import rtmp_url, validate_stream_id, with_key
from worker.core.paging import MAX_LIMIT
from worker.core.segments import SegmentStatus
from worker.core.stats import percentile
from worker.media.analyze import analyze_file
from worker.media.procs import ProcessRunner, stop_process, wait_until
from worker.media.progress import ProgressLog, wall_at


class SegmentCounts(BaseModel):
    processed: int = 0
    fallback: int = 0
    failed: int = 0


class OutputSummary(BaseModel):
    duration_s: float
    video_codec: str | None
    audio_codec: str | None
    av_offset_start_ms: float | None
    av_offset_end_ms: float | None
    problems: list[str]


class Latency(BaseModel):
    p50: float
    p95: float
    samples: int


class DubReport(BaseModel):
    """What `livedub dub` prints (as JSON) and the load benchmarks add up."""

    stream_id: str
    state: str | None
    reason: str | None
    segments: SegmentCounts
    fallback_reasons: dict[str, int] = Field(default_factory=dict)
    units: SegmentCounts | None = None  # speech mode: the speech units, by outcome
    unit_fallback_reasons: dict[str, int] = Field(default_factory=dict)
    output: OutputSummary | None
    latency_s: Latency
    latency_series_s: list[float] = Field(default_factory=list)  # one per second of media, in order
    output_reconnects: int = 0  # times the output's publisher changed while it was recorded

    @property
    def ok(self) -> bool:
        return self.output is not None and self.segments.failed == 0 and self.output.duration_s > 0


def glass_to_glass(inp: list[tuple[float, float]], out: list[tuple[float, float]], step_s: float = 1.0) -> list[float]:
    """Delay from the input reaching media time t to the output reaching it, for t on a grid. Pure."""
    if not inp or not out:
        return []
    delays = []
    t = step_s
    while t <= min(inp[-1][1], out[-1][1]):
        a, b = wall_at(inp, t), wall_at(out, t)
        if a is not None and b is not None:
            delays.append(b - a)
        t += step_s
    return delays


def run_dub(input_path: Path, output: Path, state: dict[str, Any], stream_id: str | None = None,
            target_lang: str | None = None, segment_seconds: float | None = None,
            progress: Callable[[float, float], None] | None = None, runner: ProcessRunner | None = None,
            timeout_s: float | None = None, more: dict[str, Any] | None = None) -> DubReport:
    """``more``: other stream options (segmentation, latency_s)."""
    runner = runner or ProcessRunner()
    sid = validate_stream_id(stream_id or f"dub-{uuid.uuid4().hex[:8]}")
    api, base = state["api_url"], state["rtmp_url"]
    options = {k: v for k, v in (("target_language", target_lang), ("segment_seconds", segment_seconds),
                                 *(more or {}).items()) if v is not None}
    in_url = with_key(rtmp_url(base, sid, "in"), stream_key(state, sid, options))
    duration = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                                     str(input_path)], capture_output=True, text=True, check=True).stdout.strip())
    output.parent.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(rtmp_url(base, sid, "out"), output, runner)
    publisher = runner.start(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-progress", "pipe:1",
                              "-i", str(input_path), "-c", "copy", "-f", "flv", in_url],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert publisher.stdout is not None
    in_log = ProgressLog(publisher.stdout)
    limit = timeout_s or duration * 2 + 90
    started = time.monotonic()
    try:
        while publisher.poll() is None:
            recorder.tick()
            if progress:
                progress(in_log.media_s, duration)
            if time.monotonic() - started > limit:
                raise TimeoutError("publishing took too long")
            time.sleep(0.2)
        record = wait_stream_over(api, sid, limit, recorder.tick, auth_headers(state))
        recorder.finish()
    finally:
        if publisher.poll() is None:
            stop_process(publisher, grace_s=5)
        recorder.stop()
    rep = report(sid, record, output, in_log.points, recorder.points)
    rep.output_reconnects = recorder.reconnects
    return rep


def auth_headers(state: dict[str, Any]) -> dict[str, str]:
    """The stack's operator token (its state file names it), as the stream API wants it."""
    token = state.get("operator_token")
    return {"Authorization": f"Bearer {token}"} if token else {}


def stream_key(state: dict[str, Any], sid: str, options: dict[str, Any]) -> str | None:
    """Create the stream (or, if it exists, rotate its key) with the operator token: its publish key. None
    when the stack publishes openly and has no token to ask with."""
    api, headers = state["api_url"], auth_headers(state)
    if not headers and state.get("open_publishing"):
        return None
    resp = requests.post(f"{api}/v1/streams", json={"stream_id": sid, **options}, headers=headers, timeout=10)
    if resp.status_code == 409:
        resp = requests.post(f"{api}/v1/streams/{sid}/key", headers=headers, timeout=10)
    if resp.status_code not in (200, 201):
        raise RuntimeError(f"could not create stream {sid}: {resp.status_code} {resp.text[:200]}")
    key: str = resp.json()["publish_key"]
    return key


def whole_record(api: str, sid: str, headers: dict[str, str], page_size: int = MAX_LIMIT) -> dict[str, Any]:
    """The stream's record with every segment and unit: the API pages them, so read forwards until a page
    comes back short."""
    after = {"after_segment": -1, "after_unit": -1}
    lists: dict[str, list[dict[str, Any]]] = {"segments": [], "units": []}
    while True:
        resp = requests.get(f"{api}/v1/streams/{sid}", params={"limit": page_size, **after}, timeout=10,
                            headers=headers)
        resp.raise_for_status()
        page: dict[str, Any] = resp.json()
        full = False
        for name, into in lists.items():
            got, cursor = page.get(name, []), f"after_{name[:-1]}"
            if got and got[0]["sequence"] <= after[cursor]:  # an API that does not page: do not go round forever
                raise RuntimeError(f"stream {sid}: the API sent {name} already read")
            into.extend(got)
            after[cursor] = got[-1]["sequence"] if got else after[cursor]
            full = full or len(got) >= page_size
        if not full:
            return {**page, **lists}


def wait_stream_over(api: str, sid: str, timeout_s: float, tick: Callable[[], None],
                      headers: dict[str, str]) -> dict[str, Any]:
    def over() -> bool:
        tick()  # the record's fields only: its segments and units are read once, at the end
        resp = requests.get(f"{api}/v1/streams/{sid}", params={"limit": 0}, timeout=5, headers=headers)
        return resp.status_code == 200 and resp.json().get("state") in ("ended", "failed")

    wait_until(over, timeout_s, 0.3, f"stream {sid} to end")
    return whole_record(api, sid, headers)


def report(sid: str, record: dict[str, Any], output: Path, inp: list[tuple[float, float]],
           out: list[tuple[float, float]]) -> DubReport:
    rec = StreamRecord.model_validate(record) if record.get("state") else None
    counts = SegmentCounts()
    reasons: dict[str, int] = {}
    for seg in rec.segments if rec else []:
        status = seg.status if seg.status.terminal else SegmentStatus.FAILED
        setattr(counts, status.value, getattr(counts, status.value) + 1)
        if status is SegmentStatus.FALLBACK:
            code = seg.reason_code.value if seg.reason_code else "unknown"
            reasons[code] = reasons.get(code, 0) + 1
    units, unit_reasons = SegmentCounts(), dict[str, int]()
    for unit in rec.units if rec else []:
        status = unit.status if unit.status.terminal else SegmentStatus.FAILED
        setattr(units, status.value, getattr(units, status.value) + 1)
        if status is not SegmentStatus.PROCESSED:
            code = unit.reason_code.value if unit.reason_code else "unknown"
            unit_reasons[code] = unit_reasons.get(code, 0) + 1
    analysis = analyze_file(output).summary() if output.exists() and output.stat().st_size else None
    series = glass_to_glass(inp, out)
    delays = sorted(series)
    return DubReport(
        stream_id=sid, state=record.get("state"), reason=record.get("reason"), segments=counts,
        fallback_reasons=reasons, units=units if rec and rec.units else None, unit_fallback_reasons=unit_reasons,
        output=None if analysis is None else OutputSummary.model_validate(analysis),
        latency_s=Latency(p50=round(percentile(delays, 50), 3), p95=round(percentile(delays, 95), 3),
                          samples=len(delays)),
        latency_series_s=[round(d, 3) for d in series],
    )


def load_state(path: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(path.read_text())
    return state
