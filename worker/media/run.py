"""Running one media command (ffmpeg, ffprobe) to completion, and its errors."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path


class MediaError(RuntimeError):
    """A media command failed; the message carries the end of its stderr."""


class NoVideo(MediaError):
    """The input has no video track livedub can read."""


def run_media(args: list[str], timeout_s: float = 60, nice: int = 0) -> str:
    """Run one ffmpeg/ffprobe command; MediaError with the end of its stderr when it fails. ``nice`` > 0
    runs it at a lower CPU priority (work whose deadline is further away yields to work whose is near)."""
    if isinstance(args, str):  # never a shell string
        raise TypeError("commands are argument lists, not strings")
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        if nice:
            # Set before the command starts its threads (they inherit it); no preexec_fn, which is unsafe
            # in a threaded worker.
            with contextlib.suppress(OSError):  # it has ended already
                os.setpriority(os.PRIO_PROCESS, proc.pid, nice)
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    if proc.returncode != 0:
        raise MediaError(f"{Path(args[0]).name} exited {proc.returncode}: "
                         f"{stderr.decode(errors='replace').strip()[-300:]}")
    return stdout.decode(errors="replace")
