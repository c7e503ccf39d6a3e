"""Speech units: where a unit of speech closes, given the voice-activity detector's frames. Pure.

The detector gives one speech probability and one energy per 32 ms frame. A unit opens at speech and
closes in a pause long enough (``min_pause_s``) once it is at least ``min_unit_s`` long, at the pause's
quietest stretch; a unit that reaches ``max_unit_s`` without such a pause is cut at its quietest stretch. A
short unit followed by a long silence (``flush_pause_s``) closes as it is. Silence and music never make a
unit.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


class CutKind(enum.StrEnum):
    """Why a unit closed where it did."""

    PAUSE = "pause"  # in a pause after at least min_unit_s of speech
    QUIET = "quiet"  # at max_unit_s, at the quietest point (no pause came)
    END = "end"  # the input ended (or the reader was handed over)


SILENCE_FLOOR = 1e-4  # a frame's RMS (full scale 1) below this is silence, as a codec leaves it


@dataclass(frozen=True)
class CutParams:
    frame_s: float = 0.032  # Silero: 512 samples at 16 kHz
    threshold: float = 0.5  # speech at or above
    neg_threshold: float = 0.35  # silence below (between: as before)
    min_pause_s: float = 0.2
    min_unit_s: float = 1.0
    max_unit_s: float = 4.0
    flush_pause_s: float = 0.8  # a short unit closes anyway after this much silence
    pad_s: float = 0.064  # kept around speech on both sides

    def frames(self, seconds: float) -> int:
        return max(1, math.ceil(seconds / self.frame_s - 1e-9))


@dataclass(frozen=True)
class CutUnit:
    """A closed unit in frames of the detector's clock: [start, end) and where the speech resumes at the
    earliest (the pause seen after it; ``end`` for a cut inside speech)."""

    start: int
    end: int
    free_until: int
    kind: CutKind


@dataclass
class UnitCutter:
    """Feed it frames as the detector makes them; it returns the units that closed. Deterministic."""

    params: CutParams = field(default_factory=CutParams)
    frame: int = 0  # frames seen so far
    start: int | None = None  # the open unit's first frame
    speaking: bool = False
    silence_from: int | None = None  # the current pause's first frame (inside an open unit)
    speech_from: int | None = None  # the open unit's first frame of speech
    ended: int = 0  # where the last unit that closed in a pause ended: the next one starts there at the earliest
    energies: list[float] = field(default_factory=list)  # the open unit's frames' energy
    # The longest a unit starting at a frame may be, in frames (where the video's keyframes fall makes it
    # differ from unit to unit); None: params.max_unit_s for every unit.
    longest: Callable[[int], int] | None = None

    def feed(self, probs: list[float], energies: list[float]) -> list[CutUnit]:
        out: list[CutUnit] = []
        p = self.params
        for prob, energy in zip(probs, energies, strict=True):
            i = self.frame
            self.frame += 1
            speech = prob >= p.threshold or (self.speaking and prob >= p.neg_threshold)
            self.speaking = speech
            if self.start is None:
                if speech:
                    self.start, self.silence_from = max(0, i - p.frames(p.pad_s), self.ended), None
                    self.speech_from = i
                    self.energies = [0.0] * (i - self.start)
                    self.energies.append(energy)
                continue
            self.energies.append(energy)
            if speech:
                self.silence_from = None
                if self.speech_from is None:
                    self.speech_from = i
            elif self.silence_from is None:
                self.silence_from = i
            if (cut := self._close(i + 1)) is not None:
                out.append(cut)
        return out

    def _close(self, now: int) -> CutUnit | None:
        assert self.start is not None
        p = self.params
        if self.speech_from is None:
            # Opened at a cut that fell at the start of a pause (the speaker stopped just as the unit before
            # reached its maximum): a pause long enough leaves nothing to dub, and the next speech opens a
            # unit of its own, not one that goes on with the sentence before.
            assert self.silence_from is not None
            if now - self.silence_from >= p.frames(p.min_pause_s):
                self._reset()
            return None
        length = (self.silence_from if self.silence_from is not None else now) - self.start
        if self.silence_from is not None:
            pause = now - self.silence_from
            if (pause >= p.frames(p.min_pause_s) and length >= p.frames(p.min_unit_s)) \
                    or pause >= p.frames(p.flush_pause_s):
                return self._emit(self._pause_end(now), now, CutKind.PAUSE)
            if length + pause < self._limit():
                return None
        elif now - self.start < self._limit():
            return None
        # At the maximum length with no pause: cut at the quietest stretch of the second half.
        cut = quietest(self.energies, p.frames(p.min_unit_s))
        return self._emit(self.start + cut, self.start + cut, CutKind.QUIET, reopen=True)

    def _pause_end(self, now: int) -> int:
        """Where a unit that closes in the pause heard so far ends: from the speech's end padded by
        ``pad_s``, at the first 96 ms of the pause's first ``min_pause_s`` as quiet as its quietest (twice
        its level, give or take the floor of silence a codec leaves). The detector's pause can begin on a
        word's soft end (the "m" of "them"), where the energy is still that of speech: the gap between the
        words is where the energy falls. In a clean pause that is one pad after the speech."""
        assert self.start is not None and self.silence_from is not None
        p = self.params
        first = min(self.silence_from + p.frames(p.pad_s), now)
        last = min(self.silence_from + p.frames(p.min_pause_s), now)
        levels = [(i, level_at(self.energies, i - self.start)) for i in range(first, last)]
        floor = min((lv for _, lv in levels), default=0.0)
        return next((i for i, lv in levels if lv <= 2 * floor + SILENCE_FLOOR), first)

    def _limit(self) -> int:
        assert self.start is not None
        p = self.params
        return self.longest(self.start) if self.longest is not None else p.frames(p.max_unit_s)

    def _emit(self, end: int, free_until: int, kind: CutKind, reopen: bool = False) -> CutUnit:
        assert self.start is not None
        unit = CutUnit(self.start, end, free_until, kind)
        if reopen:  # the speech goes on: the next unit starts at the cut, with the frames after it
            rest = self.energies[end - self.start:]
            self.start, self.energies = end, rest
            if self.silence_from is not None and self.silence_from < end:
                self.silence_from = end
            # its speech: from the cut, unless a pause that began at or before the cut still lasts
            self.speech_from = None if self.silence_from == end else end
        else:
            self.ended = end
            self._reset()
        return unit

    def _reset(self) -> None:
        """No unit open."""
        self.start, self.energies, self.silence_from, self.speech_from = None, [], None, None

    def flush(self) -> CutUnit | None:
        """The input ended: the open unit closes where the speech ended."""
        if self.start is None:
            return None
        end = self.silence_from if self.silence_from is not None else self.frame
        if self.speech_from is None:  # opened at a cut, and nothing but the pause after it came
            self._reset()
            return None
        unit = CutUnit(self.start, max(end, self.start + 1), self.frame, CutKind.END)
        self._reset()
        return unit

    @property
    def open_since(self) -> int | None:
        return self.start


def level_at(energies: list[float], i: int, span: int = 3) -> float:
    """The mean energy of the ``span`` frames around frame ``i`` (those there are; ``i`` must be one). Pure."""
    side = span // 2
    around = energies[max(0, i - side): i + side + 1]
    return sum(around) / len(around)


def quietest(energies: list[float], min_len: int, span: int = 3) -> int:
    """The index of the quietest frame from ``min_len`` (or the second half) on, by the mean energy of the
    ``span`` frames around it (96 ms): a gap between words, not the one silent frame of a stop consonant's
    closure inside a word. Ties go to the latest, so a cut leaves the longer unit before it. Pure."""
    lo = min(max(min_len, len(energies) // 2), max(len(energies) - 1, 0))
    best, best_level = lo, level_at(energies, lo, span) if energies else 0.0
    for i in range(lo, len(energies)):
        if (here := level_at(energies, i, span)) <= best_level:
            best, best_level = i, here
    return max(best, 1)


def max_unit_s(latency_s: float, lag_s: float, margin_s: float, reserve_s: float, hear_s: float,
               sts_s: float, piece_s: float = 0.0, floor_s: float = 1.5, ceiling_s: float = 15.0) -> float:
    """How long a unit may be so that its dub, asked for once it closes (heard ``hear_s`` after the input
    had it) and answered in ``sts_s``, still starts within ``lag_s`` of the unit's start on a stream
    ``latency_s`` behind. A unit closes by its start and its length at the latest, a pause counted in the
    length (:class:`UnitCutter`). A piece (``piece_s``, keyframe to keyframe) is sealed whole, before its
    deadline: half a piece is kept back (a whole one would cut most sentences in two and cost more in ASR
    errors than the few units it saves). Pure."""
    room = latency_s + lag_s - piece_s / 2 - margin_s - reserve_s - hear_s - sts_s
    return max(floor_s, min(ceiling_s, room))


def unit_budget_s(start_s: float, keyframes: list[float], piece_s: float, delay_s: float, lag_s: float,
                  margin_s: float, reserve_s: float, hear_s: float, sts_s: float, floor_s: float = 1.5,
                  ceiling_s: float = 15.0) -> float:
    """How long the unit starting at ``start_s`` (timeline) may be. Its dub may start as late as
    ``start_s + lag_s``, inside the piece that begins at the last keyframe before that point; that piece is
    sealed at its start + ``delay_s`` − ``margin_s`` − ``reserve_s``, so the dub must be ready by then:
    the unit's close (by its start and its length, a pause counted in the length), heard ``hear_s`` late,
    plus the STS round trip. Keyframes after the known ones are taken to come every ``piece_s``. Pure."""
    last = dub_piece_start_s(start_s, keyframes, piece_s, lag_s)
    room = last + delay_s - margin_s - reserve_s - hear_s - sts_s - start_s
    return max(floor_s, min(ceiling_s, room))


def dub_piece_start_s(start_s: float, keyframes: list[float], piece_s: float, lag_s: float) -> float:
    """Where the piece begins that holds ``start_s + lag_s``, the latest a dub of the unit starting at
    ``start_s`` may start: the dub must be placed before that piece is sealed, so the unit's deadline is that
    piece's, not its start plus the lag (up to a piece later: 0.83 s on average with 2 s pieces, measured
    on three streams). Keyframes after the known ones are taken to come every ``piece_s``; with none known
    before that point, ``start_s``. Pure."""
    reach = start_s + lag_s
    known = [k for k in keyframes if k <= reach]
    last = max(known) if known else start_s
    if keyframes and piece_s > 0 and max(keyframes) <= reach:
        last = max(keyframes) + math.floor((reach - max(keyframes)) / piece_s + 1e-9) * piece_s
    return last


CHAIN_SAMPLES = 20  # the last units' round trips the estimate is made from


def chain_estimate_s(chains: Sequence[float], configured_s: float, floor_s: float = 0.5, margin_s: float = 0.2,
                     min_samples: int = 3, quantile: float = 1.0) -> float:
    """The STS round trip (a unit's close to its dub placed on the timeline) the next units' lengths allow
    for: the ``quantile`` of the last units' round trips plus a margin, at least ``floor_s`` and never more
    than ``configured_s`` (also the figure until ``min_samples`` are known). Idle STS workers (a GPU, one
    stream) give longer units: fewer cuts inside speech, better ASR and MT. Busy ones do not make units
    shorter: a unit's ASR costs about the same however short it is, so shorter units mean more of them and
    busier workers (measured: allowed to rise, the estimate went to its ceiling within minutes on three
    streams and 1,060 of 1,303 units fell back). Pure."""
    if len(chains) < min_samples:
        return configured_s
    ordered = sorted(chains)
    high = ordered[max(0, math.ceil(quantile * len(ordered)) - 1)]
    return round(min(configured_s, max(floor_s, high + margin_s)), 3)


HEAR_SAMPLES = 100  # the last reads the hearing estimate is made from (about 5 s)


def hear_estimate_s(lags: Sequence[float], start_s: float, margin_s: float = 0.05, ceiling_s: float = 1.0,
                    min_samples: int = 20) -> float:
    """How late the detector hears the track, as the units' lengths allow for it: the most of the last
    reads' lags (wall time at a read less the wall time its first frame had on the input, ``origin_at`` +
    its timeline time) plus a margin, at least 0 and at most ``ceiling_s``; ``start_s`` until
    ``min_samples`` reads are known. A reader that falls behind makes units shorter, so that dubs still
    come in time. Pure."""
    if len(lags) < min_samples:
        return start_s
    return round(min(ceiling_s, max(0.0, max(lags) + margin_s)), 3)
