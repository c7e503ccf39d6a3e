"""Check and decode the audio of a fragment. The checks are pure; decoding goes through ffmpeg."""

from __future__ import annotations

import subprocess
import tempfile

from worker.media.wav import WavError, wav_params
from worker.sts.protocol import AUDIO_FORMATS, SAMPLE_RATES, AudioIn


class AudioError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_audio(audio: AudioIn, max_bytes: int) -> bytes:
    """The fragment's audio bytes, or AudioError with a protocol error code."""
    if audio.format not in AUDIO_FORMATS:
        raise AudioError("UNSUPPORTED_FORMAT", f"audio format {audio.format!r} is not one of {AUDIO_FORMATS}")
    if audio.sample_rate_hz not in SAMPLE_RATES:
        raise AudioError("UNSUPPORTED_SAMPLE_RATE", f"sample rate {audio.sample_rate_hz} is not one of {SAMPLE_RATES}")
    if audio.channels not in (1, 2):
        raise AudioError("UNSUPPORTED_CHANNELS", f"{audio.channels} channels: 1 or 2 are accepted")
    if audio.payload_size() > max_bytes:
        raise AudioError("FRAGMENT_TOO_LARGE", f"audio is over the {max_bytes}-byte limit")
    try:
        raw = audio.raw()
    except ValueError as exc:
        raise AudioError("INVALID_AUDIO", str(exc)) from exc
    if not raw:
        raise AudioError("INVALID_AUDIO", "audio is empty")
    if audio.format == "pcm_s16le" and len(raw) % (2 * audio.channels):
        raise AudioError("DECODE_ERROR", "pcm_s16le data is not a whole number of frames")
    if audio.format == "wav":
        try:
            wav_params(raw)
        except WavError as exc:
            raise AudioError("DECODE_ERROR", str(exc)) from exc
    if audio.format == "m4a" and raw[4:8] != b"ftyp" and not is_adts(raw):
        raise AudioError("DECODE_ERROR", "m4a data is neither MP4 (an ftyp box) nor ADTS AAC (a sync word)")
    return raw


def is_adts(raw: bytes) -> bool:
    """Raw AAC in ADTS frames, what the seed's worker sends labelled ``m4a``."""
    return len(raw) >= 7 and raw[0] == 0xFF and raw[1] & 0xF6 == 0xF0


def to_pcm_f32(audio: AudioIn, raw: bytes, rate: int = 16000) -> bytes:
    """Decode any accepted format to mono float32 little-endian PCM at ``rate`` (ffmpeg)."""
    with tempfile.NamedTemporaryFile(suffix="." + audio.format) as f:
        f.write(raw)
        f.flush()
        src = ["-f", "s16le", "-ar", str(audio.sample_rate_hz), "-ac", str(audio.channels)] \
            if audio.format == "pcm_s16le" else ["-f", "aac"] if is_adts(raw) else []
        out = subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *src, "-i", f.name,
             "-f", "f32le", "-ac", "1", "-ar", str(rate), "pipe:1"],
            capture_output=True, timeout=60,
        )
    if out.returncode != 0 or not out.stdout:
        raise AudioError("DECODE_ERROR", f"ffmpeg could not decode the audio: {out.stderr.decode()[-200:]}")
    return out.stdout


def to_m4a(data: bytes, fmt: str, rate: int, channels: int) -> bytes:
    """Dubbed audio as MP4/AAC (``m4a``), for a v1.0 client, which reads the bytes as MP4 (ffmpeg)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = f"{tmp}/in.{fmt}", f"{tmp}/out.m4a"
        with open(src, "wb") as f:
            f.write(data)
        raw_in = ["-f", "s16le", "-ar", str(rate), "-ac", str(channels)] if fmt == "pcm_s16le" else []
        out = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *raw_in, "-i", src,
                              "-c:a", "aac", "-b:a", "96k", "-f", "mp4", dst], capture_output=True, timeout=60)
        if out.returncode != 0:
            raise AudioError("DECODE_ERROR", f"ffmpeg could not encode the dub as m4a: {out.stderr.decode()[-200:]}")
        with open(dst, "rb") as f:
            return f.read()
