"""Pure parsers of what the media commands print or write: the segment list, -progress, the input start."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


def progress_out_time_s(tail: str) -> float:
    """The last ``out_time_us`` in the tail of an ffmpeg ``-progress`` file, in seconds (0 if none)."""
    for line in reversed(tail.splitlines()):
        key, _, value = line.partition("=")
        if key == "out_time_us" and value.strip().lstrip("-").isdigit():
            return max(int(value) / 1e6, 0.0)
    return 0.0


_START = re.compile(r"\bstart: (-?\d+(?:\.\d+)?)")
_LEVEL = re.compile(r"\[(warning|error|fatal|panic)\] ?")


def parse_input_start(log_text: str) -> float | None:
    """The input's start time (seconds, in the server's timestamps) as ffmpeg's info log prints it: the
    value a reader without -copyts subtracts from every timestamp. None until it is printed."""
    m = _START.search(log_text)
    return float(m.group(1)) if m else None


_KEY = re.compile(r"([?&]key=)[^&'\"\s]+")


def redact_keys(text: str) -> str:
    """URLs with their ``key`` query value hidden: ffmpeg prints the URLs it opens, keys included. Pure."""
    return _KEY.sub(r"\1…", text)


def log_problems(log_text: str) -> str:
    """The warning and error lines of an ffmpeg log written with ``-loglevel repeat+level+...``, tags
    removed; a log without level tags is taken whole."""
    lines = log_text.splitlines()
    if not any("[info]" in line or _LEVEL.search(line) for line in lines):
        return log_text
    return "\n".join(_LEVEL.sub("", line, count=1) for line in lines if _LEVEL.search(line))


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

