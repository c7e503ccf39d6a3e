"""Every media command the pipeline runs, as an argument list: ffmpeg commands built with ffmpeg-python,
ffprobe commands as plain lists. Pure: paths and numbers in, lists out; no shell is ever involved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ffmpeg

from worker.core.timing import AAC_FRAME, AUDIO_RATE, TS_OFFSET_S

SEGMENT_LIST = "list.csv"
SEGMENT_PATTERN = "seg_%05d.ts"
PROGRESS = "progress.txt"
AUDIO_TRACK = "audio.pcm"
PCM = {"f": "s16le", "ar": AUDIO_RATE, "ac": 2}  # the pipeline's own audio: 48 kHz stereo s16le


def _compile(stream: Any, ffmpeg_bin: str, loglevel: str = "error", *, nostdin: bool = True,
             overwrite: bool = True, extra: tuple[str, ...] = ()) -> list[str]:
    """ffmpeg-python puts global options last; ffmpeg wants them first."""
    args: list[str] = stream.compile(cmd=ffmpeg_bin)
    head = ["-hide_banner", *(["-nostdin"] if nostdin else []), "-loglevel", loglevel, *(["-y"] if overwrite else [])]
    return [args[0], *head, *extra, *args[1:]]


def rtmp_input_options(read_timeout_s: float) -> dict[str, Any]:
    # rw_timeout: a publisher that stops sending without closing ends the read.
    # No -fflags nobuffer: it drops the packets read while probing.
    # live_flv: FLV that may jump in time (an encoder's clock reset, a timestamp jump of hours);
    # ffmpeg removes jumps over -dts_delta_threshold (10 s), so segments and the audio track stay
    # continuous instead of filling hours with silence.
    return {"f": "live_flv", "rtmp_live": "live", "rw_timeout": int(read_timeout_s * 1_000_000)}


def audio_track_output(src: Any, out: Path) -> Any:
    """The reader's second output: the whole input audio as one continuous 48 kHz stereo PCM track, sample 0
    at time 0 (gaps filled), flushed packet by packet so it keeps up with segments."""
    return ffmpeg.output(src["a"], str(out), af=f"aresample={AUDIO_RATE}:async=1:first_pts=0", ac=2, f="s16le",
                         flush_packets=1)


def segmenter_args(
    input_url: str, out_dir: Path, segment_seconds: float, read_timeout_s: float, ffmpeg_bin: str = "ffmpeg",
    audio_track: bool = False, start_number: int = 0, clock_base_s: float | None = None,
) -> list[str]:
    """Cut the live input at keyframes into MPEG-TS segments, keeping absolute timestamps (and, with
    ``audio_track``, write the continuous audio track next to them).

    The reader's clock is the server's timestamps less a base: by default the input's start (ffmpeg
    prints it at info level, tagged, so the job reads it from the log); with ``clock_base_s`` that base
    exactly (-copyts, -itsoffset), so a second reader of the same input runs on a clock a whole number of
    segments behind the first and cuts on the same grid (a make-before-break takeover).

    A line is appended to ``list.csv`` only after a segment's file is closed: the completion signal.
    Progress blocks every 0.5 s tell the job that media arrives before the first segment closes.
    """
    clock = {} if clock_base_s is None else {"copyts": None, "itsoffset": f"{-clock_base_s:.6f}"}
    src = ffmpeg.input(input_url, **clock, **rtmp_input_options(read_timeout_s))
    segments = ffmpeg.output(
        src["v?"], src["a?"], str(out_dir / SEGMENT_PATTERN),
        c="copy", f="segment", segment_time=f"{segment_seconds:g}", segment_format="mpegts", reset_timestamps=0,
        segment_list=str(out_dir / SEGMENT_LIST), segment_list_type="csv", segment_list_flags="live",
        segment_start_number=start_number, muxdelay=0, muxpreload=0,
    )
    outputs = ffmpeg.merge_outputs(segments, audio_track_output(src, out_dir / AUDIO_TRACK)) if audio_track \
        else segments
    return _compile(outputs, ffmpeg_bin, "repeat+level+info", overwrite=False,
                    extra=("-nostats", "-progress", str(out_dir / PROGRESS), "-stats_period", "0.5"))


# The demuxer for each dub format an STS service may return: always named, never guessed, so bytes that
# are really an HLS playlist (or anything else) are not opened as one; and only local files are read.
DUB_DEMUXERS = {"wav": "wav", "m4a": "mov", "adts": "aac", "pcm_s16le": "s16le", "pcm_f32le": "f32le"}


def _dub_input(src: Path, fmt: str, rate: int, channels: int) -> Any:
    """Dubbed audio as the STS service returned it."""
    raw = {"ar": rate, "ac": channels} if fmt.startswith("pcm_") else {}
    return ffmpeg.input(str(src), f=DUB_DEMUXERS[fmt], protocol_whitelist="file", **raw)


def fit_args(ffmpeg_bin: str, dub: Path | None, dub_fmt: str, dub_rate: int, dub_channels: int, orig: Path,
             samples: int, ratio: float, mode: str, duck_db: float, out: Path) -> list[str]:
    """Fit the dub to exactly ``samples`` (stretch by ``ratio``, pad, trim) and mix it over the original
    (ducked by ``duck_db``), or replace it. No dub: the original, untouched."""
    original = ffmpeg.input(str(orig), **PCM).audio
    if dub is None:
        fitted = original.filter("apad", whole_len=samples).filter("atrim", end_sample=samples)
        return _compile(ffmpeg.output(fitted, str(out), **PCM), ffmpeg_bin)
    d = _dub_input(dub, dub_fmt, dub_rate, dub_channels).audio
    d = d.filter("aresample", AUDIO_RATE).filter("aformat", sample_fmts="s16", channel_layouts="stereo")
    if ratio > 1.0:
        d = d.filter("atempo", f"{ratio:.6f}")
    d = d.filter("apad", whole_len=samples).filter("atrim", end_sample=samples)
    if mode == "replace":
        return _compile(ffmpeg.output(d, str(out), **PCM), ffmpeg_bin)
    ducked = original.filter("atrim", end_sample=samples).filter("volume", f"{-abs(duck_db)}dB")
    mixed = ffmpeg.filter([ducked, d], "amix", inputs=2, duration="first", dropout_transition=0, normalize=0)
    return _compile(ffmpeg.output(mixed, str(out), **PCM), ffmpeg_bin)


def dub_pcm_args(ffmpeg_bin: str, dub: Path, dub_fmt: str, dub_rate: int, dub_channels: int, samples: int,
                 ratio: float, out: Path) -> list[str]:
    """A dub as placed on the timeline: 48 kHz stereo s16le, sped up by ``ratio``, exactly ``samples``."""
    d = _dub_input(dub, dub_fmt, dub_rate, dub_channels).audio
    d = d.filter("aresample", AUDIO_RATE).filter("aformat", sample_fmts="s16", channel_layouts="stereo")
    if ratio > 1.0:
        d = d.filter("atempo", f"{ratio:.6f}")
    d = d.filter("apad", whole_len=samples).filter("atrim", end_sample=samples)
    return _compile(ffmpeg.output(d, str(out), **PCM), ffmpeg_bin)


def piece_args(ffmpeg_bin: str, segment: Path, pcm: Path, start_sample: int, out: Path, bitrate: str = "128k",
               ts_offset_s: float = 0.0, samples: int | None = None, lead: int = 0) -> list[str]:
    """One output piece: the segment's video copied (never re-encoded) and the PCM encoded to AAC.

    Timestamps are kept (-copyts) and shifted by TS_OFFSET_S on both inputs; the audio starts at its
    AAC-frame boundary (asetpts); the encoder's priming packet is dropped; the mpegts muxer adds
    no delay. Pieces then concatenate into one continuous stream. ``ts_offset_s`` moves a resumed
    reader's part (whose own clock restarted at 0) onto the stream's timeline.

    With ``samples`` (the piece's length, whole AAC frames), the PCM may begin ``lead`` samples (whole
    frames) before the piece, at ``start_sample``, and go on past it: each AAC frame's transform window
    reaches a frame into the next, so a piece whose encoder heard the audio around it on both sides
    (the same on both sides of every seam) decodes across its seams without a dip; the packets before
    and after the piece are dropped.
    """
    base = TS_OFFSET_S + ts_offset_s
    video = ffmpeg.input(str(segment), copyts=None, itsoffset=f"{base:.6f}")
    # The PCM's first sample goes to base + start_sample, in whole samples, by a filter: FFmpeg 5.1 moves
    # a raw PCM input by -itsoffset, but FFmpeg 9 ignores it there (the audio then started at 0).
    first = round(base * AUDIO_RATE) + start_sample
    audio = ffmpeg.input(str(pcm), **PCM).audio.filter("asetpts", f"PTS+round({first}/SR/TB)")
    skip = lead // AAC_FRAME
    drop = "eq(n\\,0)" if samples is None else f"lte(n\\,{skip})+gt(n\\,{skip + -(-samples // AAC_FRAME)})"
    out_stream = ffmpeg.output(
        video["v:0"], audio, str(out),
        **{"c:v": "copy", "c:a": "aac", "b:a": bitrate, "bsf:a": f"noise=drop={drop}"},
        f="mpegts", mpegts_flags="+initial_discontinuity", muxdelay=0, muxpreload=0,
    )
    return _compile(out_stream, ffmpeg_bin)


def publisher_args(ffmpeg_bin: str, url: str) -> list[str]:
    """The per-stream publisher: MPEG-TS pieces on stdin, paced in real time, copied to RTMP."""
    # Probe one second, not five: a short piece (speech mode's pieces follow keyframes) would otherwise
    # hold the output back until five seconds of pieces had come.
    out = ffmpeg.input("pipe:0", f="mpegts", re=None, analyzeduration=1_000_000).output(url, c="copy", f="flv")
    return _compile(out, ffmpeg_bin, "warning", nostdin=False, overwrite=False,
                    extra=("-progress", "pipe:1", "-stats_period", "0.25"))


def m4a_args(ffmpeg_bin: str, pcm: Path, out: Path) -> list[str]:
    """The pipeline's PCM as MP4/AAC (``m4a``): what a plain v1.0 STS server (the seed's) expects."""
    audio = ffmpeg.input(str(pcm), **PCM).audio
    return _compile(ffmpeg.output(audio, str(out), acodec="aac", audio_bitrate="128k", f="mp4"), ffmpeg_bin)


def duration_args(ffprobe: str, path: Path, dub_format: str | None = None) -> list[str]:
    """A media file's duration in seconds (ffprobe); a dub's with its demuxer named and local files only."""
    named = ["-f", DUB_DEMUXERS[dub_format], "-protocol_whitelist", "file"] if dub_format else []
    return [ffprobe, "-v", "error", *named, "-show_entries", "format=duration", "-of", "csv=p=0", str(path)]
