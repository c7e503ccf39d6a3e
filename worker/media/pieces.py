"""ffmpeg argument lists for the pipeline's media steps. Pure: paths and numbers in, lists out."""

from __future__ import annotations

from pathlib import Path

from worker.core.timing import AUDIO_RATE, TS_OFFSET_S

BASE = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
PCM_IN = ["-f", "s16le", "-ar", str(AUDIO_RATE), "-ac", "2"]
FRAME_BYTES = 4  # s16le stereo


def audio_track_args(out: Path) -> list[str]:
    """The ingest reader's second output: the whole input audio as one continuous 48 kHz stereo PCM
    track, sample 0 at time 0 (gaps filled), flushed packet by packet so it keeps up with segments."""
    return ["-map", "0:a", "-af", f"aresample={AUDIO_RATE}:async=1:first_pts=0", "-ac", "2", "-f", "s16le",
            "-flush_packets", "1", str(out)]


def extract_dub_args(ffmpeg: str, src: Path, fmt: str, rate: int, channels: int) -> list[str]:
    """Input options for dubbed audio as the STS service returned it."""
    if fmt == "pcm_s16le":
        return [ffmpeg, *BASE, "-f", "s16le", "-ar", str(rate), "-ac", str(channels), "-i", str(src)]
    return [ffmpeg, *BASE, "-i", str(src)]


def fit_args(ffmpeg: str, dub: Path | None, dub_fmt: str, dub_rate: int, dub_channels: int, orig: Path,
             samples: int, ratio: float, mode: str, duck_db: float, out: Path) -> list[str]:
    """Fit the dub to exactly ``samples`` (stretch by ``ratio``, pad, trim) and mix it over the original
    (ducked by ``duck_db``), or replace it. No dub: the original, untouched."""
    if dub is None:
        return [ffmpeg, *BASE, *PCM_IN, "-i", str(orig), "-af", f"apad=whole_len={samples},atrim=end_sample={samples}",
                *PCM_IN, str(out)]
    args = extract_dub_args(ffmpeg, dub, dub_fmt, dub_rate, dub_channels)
    args += [*PCM_IN, "-i", str(orig)]
    tempo = f",atempo={ratio:.6f}" if ratio > 1.0 else ""
    dub_chain = (f"[0:a]aresample={AUDIO_RATE},aformat=sample_fmts=s16:channel_layouts=stereo{tempo},"
                 f"apad=whole_len={samples},atrim=end_sample={samples}[d]")
    if mode == "replace":
        graph = dub_chain
        label = "[d]"
    else:
        graph = (f"{dub_chain};[1:a]atrim=end_sample={samples},volume={-abs(duck_db)}dB[o];"
                 "[o][d]amix=inputs=2:duration=first:dropout_transition=0:normalize=0[m]")
        label = "[m]"
    return [*args, "-filter_complex", graph, "-map", label, *PCM_IN, str(out)]


def piece_args(ffmpeg: str, segment: Path, pcm: Path, start_sample: int, out: Path, bitrate: str = "128k",
               ts_offset_s: float = 0.0) -> list[str]:
    """One output piece: the segment's video copied (never re-encoded) and the PCM encoded to AAC.

    Timestamps are kept (-copyts) and shifted by TS_OFFSET_S on both inputs; the audio starts at its
    AAC-frame boundary (-itsoffset); the encoder's priming packet is dropped; the mpegts muxer adds
    no delay. Pieces then concatenate into one continuous stream. ``ts_offset_s`` moves a resumed
    reader's part (whose own clock restarted at 0) onto the stream's timeline.
    """
    base = TS_OFFSET_S + ts_offset_s
    return [
        ffmpeg, *BASE, "-copyts", "-itsoffset", f"{base:.6f}", "-i", str(segment),
        "-itsoffset", f"{base + start_sample / AUDIO_RATE:.6f}", *PCM_IN, "-i", str(pcm),
        "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", bitrate,
        "-bsf:a", "noise=drop=eq(n\\,0)",
        "-f", "mpegts", "-mpegts_flags", "+initial_discontinuity", "-muxdelay", "0", "-muxpreload", "0", str(out),
    ]


def publisher_args(ffmpeg: str, url: str) -> list[str]:
    """The per-stream publisher: MPEG-TS pieces on stdin, paced in real time, copied to RTMP."""
    return [ffmpeg, "-hide_banner", "-loglevel", "warning", "-progress", "pipe:1", "-stats_period", "0.25", "-re",
            "-f", "mpegts", "-i", "pipe:0", "-c", "copy", "-f", "flv", url]


def video_span_args(ffprobe: str, segment: Path) -> list[str]:
    return [ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,duration_time",
            "-of", "csv=p=0", str(segment)]


def parse_video_span(csv_text: str) -> tuple[float, float] | None:
    """(first pts, last pts + its duration) in seconds from ffprobe's packet csv; None: no video."""
    starts, ends = [], []
    for line in csv_text.splitlines():
        parts = [p for p in line.strip().split(",") if p]
        if not parts or parts[0] == "N/A":
            continue
        pts = float(parts[0])
        dur = float(parts[1]) if len(parts) > 1 and parts[1] != "N/A" else 0.0
        starts.append(pts)
        ends.append(pts + dur)
    if not starts:
        return None
    return min(starts), max(ends)
