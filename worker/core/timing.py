"""Timing math for A/V sync and deadlines. Pure functions, integer arithmetic where it matters.

Audio boundaries sit on AAC frames (1024 samples) computed from absolute video time, so the boundary
between pieces k and k+1 is one function of that video time and both neighbours agree on it.
Rounding is half-up on exact integers (microseconds), never float ``round()`` (round-half-even once
duplicated a frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

AUDIO_RATE = 48000
AAC_FRAME = 1024
# Speech mode encodes each piece's audio with this much of the audio around it (whole AAC frames): two
# frames before (the encoder settles after its priming) and one after (the last frame's transform window
# reaches into the next piece), then keeps the piece's own packets, so pieces decode across seams whole.
SEAM_LEAD = 2 * AAC_FRAME
SEAM_AHEAD = AAC_FRAME
FRAME_BYTES = 4  # one sample of the pipeline's audio: s16le stereo
# Every piece is shifted by this much so that no timestamp sits near zero, where ffmpeg's -copyts
# input handling moves the first frame; all pieces share it, so the output is continuous.
TS_OFFSET_S = 10


def to_us(t_s: float) -> int:
    """Seconds (from ffprobe's decimal text, microsecond precision) to integer microseconds."""
    return int(round(t_s * 1_000_000))


def audio_boundary(t_us: int, rate: int = AUDIO_RATE, frame: int = AAC_FRAME) -> int:
    """The sample index of the AAC frame boundary nearest to video time ``t_us`` (half rounds up)."""
    if t_us < 0:
        raise ValueError("times before the stream start have no audio boundary")
    unit = frame * 1_000_000
    return frame * ((t_us * rate + unit // 2) // unit)



@dataclass(frozen=True)
class FitPlan:
    """How dubbed audio of ``dub`` samples fills a slot of ``slot`` samples."""

    ratio: float  # atempo factor (1.0: none)
    pad: int  # silence added after the (stretched) dub, in samples
    trim: int  # samples cut from the end: the last resort

    @property
    def stretched(self) -> bool:
        return self.ratio > 1.0


def fit_plan(dub: int, slot: int, max_ratio: float) -> FitPlan:
    """Too long: speed up, at most ``max_ratio``; then trim what still overflows. Too short: pad."""
    if slot <= 0:
        raise ValueError("empty slot")
    if max_ratio < 1.0:
        raise ValueError("max_ratio below 1 would slow speech down")
    if dub <= slot:
        return FitPlan(1.0, slot - dub, 0)
    if dub <= slot * max_ratio:
        return FitPlan(dub / slot, 0, 0)  # stretched to fill the slot exactly
    after = math.ceil(dub / max_ratio - 1e-9) if max_ratio > 1.0 else dub
    return FitPlan(max_ratio, 0, after - slot)


def slice_plan(track_bytes: int, b0: int, b1: int, frame_bytes: int) -> tuple[int, int]:
    """Samples [b0, b1) of a PCM track of ``track_bytes`` bytes: (bytes to copy from sample b0 on, bytes of
    silence after them, where the track has nothing yet). Pure."""
    if b1 < b0 or b0 < 0:
        raise ValueError("slice ends before it starts, or starts before the track")
    need = (b1 - b0) * frame_bytes
    have = max(0, track_bytes // frame_bytes - b0) * frame_bytes
    copy = min(need, have)
    return copy, need - copy


def output_delay_s(segment_s: float, budget_s: float) -> float:
    """Fixed per stream: one segment (it must be complete before work starts) plus the budget.
    ``segment_s`` is the longer of the configured length and the first segment's real length."""
    return segment_s + budget_s


def piece_deadline(origin_wall: float, start_s: float, delay_s: float, margin_s: float) -> float:
    """Wall time by which piece k must be fed to the publisher so its output never stalls."""
    return origin_wall + start_s + delay_s - margin_s


def poll_delay(now: float, deadline: float | None, fine_s: float = 0.02, coarse_s: float = 0.1) -> float:
    """How long the publisher waits before it looks at a piece again: coarse while the deadline is far
    (or unknown), fine near it, so a stream's idle polling stays cheap. Pure."""
    if deadline is None:
        return coarse_s
    return max(fine_s, min(coarse_s, deadline - now - fine_s))


@dataclass(frozen=True)
class SegmentPlan:
    """Where a segment sits: its span on the stream's timeline, its audio samples [b0, b1) in the reader's
    own clock (the continuous track), and the wall time by which its piece must be fed."""

    start_s: float
    end_s: float
    b0: int
    b1: int
    deadline_at: float

    @property
    def samples(self) -> int:
        return self.b1 - self.b0


def plan_segment(local: tuple[float, float], offset_s: float, origin_at: float, delay_s: float,
                 margin_s: float) -> SegmentPlan:
    """Place a segment whose video spans ``local`` in its reader's clock (``offset_s`` behind the stream's
    timeline, a whole number of samples). The audio boundaries sit on AAC frames of the timeline, so
    pieces cut by two readers meet without a gap or an overlap; b0/b1 index the reader's own track. Pure."""
    start, end = local[0] + offset_s, local[1] + offset_s
    shift = round(offset_s * AUDIO_RATE)
    b0, b1 = audio_boundary(to_us(start)) - shift, audio_boundary(to_us(end)) - shift
    return SegmentPlan(start, end, b0, b1, piece_deadline(origin_at, start, delay_s, margin_s))


def first_placement(now: float, local: tuple[float, float], segment_s: float, budget_s: float,
                    latency_s: float | None = None) -> tuple[float, float]:
    """(origin_at, delay_s) of a stream from its first segment, which completed at ``now``: its end is
    "now" on the input's clock. Keyframes further apart than configured make longer segments: the delay
    covers them. Speech mode: ``latency_s``, but never less than a piece and a second and a half. Pure."""
    if latency_s is not None:
        return now - local[1], max(latency_s, local[1] - local[0] + 1.5)
    return now - local[1], output_delay_s(max(segment_s, local[1] - local[0]), budget_s)


def whole_samples(t_s: float, rate: int = AUDIO_RATE) -> float:
    """``t_s`` rounded to a whole number of audio samples. Pure."""
    return round(t_s * rate) / rate


def resumed_offset(now: float, origin_at: float, local: tuple[float, float], last_end_s: float) -> float:
    """Where a resumed reader's clock (restarted at 0) starts on the stream's timeline: media time follows
    the wall clock, so the output keeps its delay, with a gap for what was lost, never overlapping what
    is already placed (``last_end_s``). Whole samples. Pure."""
    return math.ceil(max(now - origin_at - local[1], last_end_s - local[0]) * AUDIO_RATE - 1e-6) / AUDIO_RATE


def takeover_shift(old_now_s: float, segment_s: float, margin_s: float = 1.0) -> float:
    """How far a taking-over reader's clock runs behind the running reader's: a whole number of segments
    (so the segment muxers of both cut on one grid, at the same keyframes) and of samples, chosen so the
    new clock is still a little above zero (``margin_s``) when it joins at ``old_now_s`` or later. Pure."""
    if segment_s <= 0:
        raise ValueError("segments must have a length")
    return whole_samples(max(0, math.floor((old_now_s - margin_s) / segment_s)) * segment_s)


def keyframe_overdue(progress_s: float, open_since_s: float, segment_s: float, max_segments: float) -> bool:
    """Has the open segment (since ``open_since_s`` of the reader's clock) gone on for more than
    ``max_segments`` segment lengths without a keyframe to cut at? Pure."""
    return progress_s - open_since_s > max_segments * segment_s


def segment_kbps(size_bytes: int, start_s: float, end_s: float) -> float:
    """A segment's bitrate in kbit/s (its length at least one millisecond). Pure."""
    return size_bytes * 8 / 1000 / max(end_s - start_s, 0.001)


def matching_cut(t_s: float, cuts: list[float], tol_s: float = 0.0015) -> float | None:
    """The cut among ``cuts`` at ``t_s`` (keyframe times in ms, printed in µs; one tolerance), if any. Pure."""
    return next((c for c in cuts if abs(c - t_s) <= tol_s), None)


def planned_av_offsets_ms(local: tuple[float, float], b0: int, b1: int, rate: int = AUDIO_RATE) -> tuple[float, float]:
    """(start, end) offset of a piece's audio against its video, in ms, as the pipeline places them:
    audio starts at sample ``b0`` and ends at ``b1`` of the reader's clock, video spans ``local``. Pure."""
    return (b0 / rate - local[0]) * 1000, (b1 / rate - local[1]) * 1000
