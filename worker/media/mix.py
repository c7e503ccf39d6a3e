"""The audio of one video piece from the stream's timeline: the original, ducked with ramps under every
dub placed there, and the dubs over it. Pure functions on arrays of timeline samples (48 kHz stereo s16).

The gain is a function of the absolute timeline position and the placements alone, so two neighbouring
pieces compute the same gain on either side of their boundary: no step, no click, where a dub crosses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RAMP = 2400  # 50 ms: the original fades down before a dub and back up after it
EDGE = 240  # 5 ms: each dub fades in and out, so a trimmed dub ends without a click


@dataclass(frozen=True)
class PlacedDub:
    start: int  # timeline sample
    audio: np.ndarray  # (samples, 2) int16, as placed


def duck_gain(n0: int, n: int, spans: list[tuple[int, int]], duck: float, ramp: int = RAMP) -> np.ndarray:
    """The original's gain at timeline samples [n0, n0 + n): ``duck`` under each span, ramping linearly
    over ``ramp`` samples before its start and after its end; 1 elsewhere. Pure."""
    t = np.arange(n0, n0 + n, dtype=np.float64)
    gain = np.ones(n, dtype=np.float64)
    for s0, s1 in spans:
        depth = np.clip(np.minimum((t - (s0 - ramp)) / ramp, ((s1 + ramp) - t) / ramp), 0.0, 1.0)
        gain = np.minimum(gain, 1.0 - (1.0 - duck) * depth)
    return gain


def edge_fade(audio: np.ndarray, edge: int = EDGE) -> np.ndarray:
    """The dub with short fades at both ends. Pure."""
    out = audio.astype(np.float64)
    k = min(edge, len(out) // 2)
    if k:
        ramp = np.linspace(0.0, 1.0, k, endpoint=False)[:, None]
        out[:k] *= ramp
        out[len(out) - k:] *= ramp[::-1]
    return out


def mix_piece(orig: np.ndarray, n0: int, dubs: list[PlacedDub], duck: float) -> np.ndarray:
    """The piece's audio: ``orig`` (samples, 2) int16 starting at timeline sample ``n0``. Pure."""
    n = len(orig)
    gain = duck_gain(n0, n, [(d.start, d.start + len(d.audio)) for d in dubs], duck)
    out = orig.astype(np.float64) * gain[:, None]
    for d in dubs:
        lo, hi = max(n0, d.start), min(n0 + n, d.start + len(d.audio))
        if lo < hi:
            out[lo - n0:hi - n0] += edge_fade(d.audio)[lo - d.start:hi - d.start]
    return np.clip(np.rint(out), -32768, 32767).astype("<i2")


def from_pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").reshape(-1, 2)


def db_gain(db: float) -> float:
    """-``db`` dB as a linear gain. Pure."""
    return float(10 ** (-db / 20))
