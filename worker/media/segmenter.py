"""ffmpeg command builders (argument lists, via ffmpeg-python) and pure parsers of their output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from worker.media.pieces import audio_track_args

SEGMENT_LIST = "list.csv"
SEGMENT_PATTERN = "seg_%05d.ts"
PROGRESS = "progress.txt"
GLOBAL_ARGS = ["-hide_banner", "-nostdin", "-loglevel", "warning"]


def _compile(stream: Any, ffmpeg_bin: str) -> list[str]:
    """ffmpeg-python puts global args last; ffmpeg wants them first."""
    args: list[str] = stream.compile(cmd=ffmpeg_bin)
    return [args[0], *GLOBAL_ARGS, *args[1:]]


def rtmp_input_options(read_timeout_s: float) -> dict[str, Any]:
    # rw_timeout: a publisher that stops sending without closing ends the read.
    # No -fflags nobuffer: it drops the packets read while probing.
    # live_flv: FLV that may jump in time (an encoder's clock reset, a timestamp jump of hours);
    # ffmpeg removes jumps over -dts_delta_threshold (10 s), so segments and the audio track stay
    # continuous instead of filling hours with silence.
    return {"f": "live_flv", "rtmp_live": "live", "rw_timeout": int(read_timeout_s * 1_000_000)}


def segmenter_args(
    input_url: str, out_dir: Path, segment_seconds: float, read_timeout_s: float, ffmpeg_bin: str = "ffmpeg",
    audio_track: bool = False, start_number: int = 0,
) -> list[str]:
    """Cut the live input at keyframes into MPEG-TS segments, keeping absolute timestamps.

    A line is appended to ``list.csv`` only after a segment's file is closed: the completion signal.
    """
    src = ffmpeg.input(input_url, **rtmp_input_options(read_timeout_s))
    out = ffmpeg.output(
        src["v?"],
        src["a?"],
        str(out_dir / SEGMENT_PATTERN),
        c="copy",
        f="segment",
        segment_time=f"{segment_seconds:g}",
        segment_format="mpegts",
        reset_timestamps=0,
        segment_list=str(out_dir / SEGMENT_LIST),
        segment_list_type="csv",
        segment_list_flags="live",
        segment_start_number=start_number,
        muxdelay=0,
        muxpreload=0,
    )
    args = _compile(out, ffmpeg_bin)
    if audio_track:  # the continuous original audio, for exact per-piece slicing
        args += audio_track_args(out_dir / "audio.pcm")
    # Progress blocks every 0.5 s tell the job that media arrives before the first segment closes.
    return [args[0], "-progress", str(out_dir / PROGRESS), "-stats_period", "0.5", *args[1:]]


def progress_out_time_s(tail: str) -> float:
    """The last ``out_time_us`` in the tail of an ffmpeg ``-progress`` file, in seconds (0 if none)."""
    for line in reversed(tail.splitlines()):
        key, _, value = line.partition("=")
        if key == "out_time_us" and value.strip().lstrip("-").isdigit():
            return max(int(value) / 1e6, 0.0)
    return 0.0


@dataclass(frozen=True)
class ListEntry:
    sequence: int
    file: str
    start_s: float
    end_s: float


def parse_segment_list(text: str) -> list[ListEntry]:
    """Parse ffmpeg's csv segment list. A trailing line without a newline is still being written."""
    entries = []
    lines = text.split("\n")
    for line in lines[:-1]:  # the part after the last newline is incomplete
        line = line.strip()
        if not line:
            continue
        name, start, end = line.rsplit(",", 2)
        seq = int(Path(name).stem.rsplit("_", 1)[1])
        entries.append(ListEntry(seq, name, float(start), float(end)))
    return entries
