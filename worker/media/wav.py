"""WAV headers: rate, channels and length, without decoding."""

from __future__ import annotations

import io
import wave
from pathlib import Path


class WavError(ValueError):
    """Bytes that are not a readable WAV file."""


def wav_params(src: bytes | Path) -> tuple[int, int, int]:
    """(rate, channels, frames) of a WAV (its bytes, or a file of which only the header is read), or
    WavError."""
    try:
        with wave.open(io.BytesIO(src) if isinstance(src, bytes) else str(src)) as w:
            return w.getframerate(), w.getnchannels(), w.getnframes()
    except (wave.Error, EOFError) as exc:
        raise WavError(f"not a valid WAV file: {exc}") from exc


def wav_duration_ms(raw: bytes) -> float:
    rate, _, frames = wav_params(raw)
    return frames * 1000.0 / rate
