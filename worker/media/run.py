"""Running one media command (ffmpeg, ffprobe) to completion, and its errors."""

from __future__ import annotations

import subprocess
from pathlib import Path


class MediaError(RuntimeError):
    """A media command failed; the message carries the end of its stderr."""


class NoVideo(MediaError):
    """The input has no video track livedub can read."""


def run_media(args: list[str], timeout_s: float = 60) -> str:
    """Run one ffmpeg/ffprobe command; MediaError with the end of its stderr when it fails."""
    if isinstance(args, str):  # never a shell string
        raise TypeError("commands are argument lists, not strings")
    out = subprocess.run(args, capture_output=True, timeout=timeout_s)
    if out.returncode != 0:
        raise MediaError(f"{Path(args[0]).name} exited {out.returncode}: "
                         f"{out.stderr.decode(errors='replace').strip()[-300:]}")
    return out.stdout.decode(errors="replace")
