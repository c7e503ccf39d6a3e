"""Output analyzer: codecs, durations, A/V offsets and DTS monotonicity of a recorded stream.

:func:`analyze_packets` is pure (ffprobe's JSON in, a report out); :func:`analyze_file` runs ffprobe.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StreamReport:
    codec: str
    start_s: float
    end_s: float
    packets: int
    non_monotonic_dts: int

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Report:
    video: StreamReport | None
    audio: StreamReport | None
    problems: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        spans = [s for s in (self.video, self.audio) if s is not None]
        return max(s.end_s for s in spans) - min(s.start_s for s in spans) if spans else 0.0

    @property
    def av_offset_start_ms(self) -> float | None:
        if self.video is None or self.audio is None:
            return None
        return (self.audio.start_s - self.video.start_s) * 1000

    @property
    def av_offset_end_ms(self) -> float | None:
        if self.video is None or self.audio is None:
            return None
        return (self.audio.end_s - self.video.end_s) * 1000

    def summary(self) -> dict[str, Any]:
        return {
            "duration_s": round(self.duration_s, 3),
            "video_codec": self.video.codec if self.video else None,
            "audio_codec": self.audio.codec if self.audio else None,
            "video": asdict(self.video) if self.video else None,
            "audio": asdict(self.audio) if self.audio else None,
            "av_offset_start_ms": _r(self.av_offset_start_ms),
            "av_offset_end_ms": _r(self.av_offset_end_ms),
            "problems": self.problems,
        }

    def check(self, duration_s: float, duration_tol_s: float, av_tol_ms: float) -> list[str]:
        """Every way the output misses the given targets (empty when it meets them)."""
        problems = list(self.problems)
        if self.video is None or self.audio is None:
            problems.append("output lacks a video or an audio stream")
            return problems
        if abs(self.duration_s - duration_s) > duration_tol_s:
            problems.append(f"duration {self.duration_s:.3f}s is not {duration_s}s ± {duration_tol_s}s")
        for name, off in (("start", self.av_offset_start_ms), ("end", self.av_offset_end_ms)):
            if off is not None and abs(off) > av_tol_ms:
                problems.append(f"A/V offset at the {name} is {off:.1f} ms (limit {av_tol_ms} ms)")
        for s in (self.video, self.audio):
            if s.non_monotonic_dts:
                problems.append(f"{s.codec}: {s.non_monotonic_dts} non-monotonic DTS")
        return problems


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def _stream(packets: list[dict[str, Any]], codec: str) -> StreamReport | None:
    if not packets:
        return None
    starts, ends, dts = [], [], []
    for p in packets:
        pts = float(p.get("pts_time", p.get("dts_time", "nan")))
        if pts != pts:  # NaN: no timestamp
            continue
        starts.append(pts)
        ends.append(pts + float(p.get("duration_time") or 0))
        if "dts_time" in p:
            dts.append(float(p["dts_time"]))
    non_mono = sum(1 for a, b in zip(dts, dts[1:], strict=False) if b <= a)
    return StreamReport(codec, min(starts), max(ends), len(starts), non_mono)


def analyze_packets(probe: dict[str, Any]) -> Report:
    """Build a report from ``ffprobe -show_streams -show_packets -of json`` output."""
    kinds = {s["index"]: (s.get("codec_type"), s.get("codec_name", "?")) for s in probe.get("streams", [])}
    by_index: dict[int, list[dict[str, Any]]] = {i: [] for i in kinds}
    for p in probe.get("packets", []):
        by_index.setdefault(p["stream_index"], []).append(p)
    video = audio = None
    problems = []
    for index, (ctype, codec) in kinds.items():
        rep = _stream(by_index.get(index, []), codec)
        if ctype == "video" and video is None:
            video = rep
        elif ctype == "audio" and audio is None:
            audio = rep
        elif ctype in ("video", "audio"):
            problems.append(f"extra {ctype} stream {index} ({codec})")
    return Report(video, audio, problems)


def analyze_file(path: Path, ffprobe_bin: str = "ffprobe", timeout_s: float = 120) -> Report:
    out = subprocess.run(
        [ffprobe_bin, "-v", "error", "-show_streams", "-show_packets", "-show_entries",
         "packet=stream_index,pts_time,dts_time,duration_time:stream=index,codec_type,codec_name", "-of", "json",
         str(path)],
        capture_output=True, timeout=timeout_s,
    )
    if out.returncode != 0:
        return Report(None, None, [f"ffprobe failed: {out.stderr.decode(errors='replace')[-300:]}"])
    return analyze_packets(json.loads(out.stdout or b"{}"))
