"""Reading a segment's packet times in the worker, with FFmpeg's own MPEG-TS demuxer (PyAV), not ffprobe.

The same demuxer and parsers ffprobe runs, so the same times; but no process: ffprobe took 0.10 CPU-s a
2 s segment on this machine (most of it starting), the demuxer in the worker 5 ms. On three speech-mode
streams (a segment every 0.67 s) that was 7 % of two cores, on the ingest's path to every piece.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from worker.media.run import MediaError

SEGMENT_FORMAT = "mpegts"  # what the reader's segment muxer writes (commands.segmenter_args)


def _seconds(ticks: int, time_base: Fraction) -> float:
    """Ticks to seconds at microsecond precision, as ffprobe prints them (``to_us`` reads microseconds)."""
    return round(float(ticks * time_base), 6)


def video_span(segment: Path) -> tuple[float, float] | None:
    """(first pts, last pts + its duration) in seconds of a segment's first video stream; None: it has no
    video (or no video packet with a time). MediaError: the file is missing or not MPEG-TS."""
    try:
        with av.open(str(segment), format=SEGMENT_FORMAT) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            time_base = stream.time_base
            if time_base is None:
                return None
            first: float | None = None
            end: float | None = None
            for packet in container.demux(stream):
                if packet.pts is None:  # the demuxer's flush packet, or a packet without a time
                    continue
                start = _seconds(packet.pts, time_base)
                stop = start + _seconds(packet.duration or 0, time_base)
                first, end = (start, stop) if first is None or end is None else (min(first, start), max(end, stop))
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"cannot read {segment.name}: {exc}") from exc
    return None if first is None or end is None else (first, round(end, 6))
