"""Where each dub lands on the stream's audio timeline, and when a video piece's audio is final. Pure.

Positions are timeline samples (48 kHz from the stream's first frame). A dub starts at its unit's start
if it is ready by then (the piece there is not sealed yet), else as soon as it is ready, at most
``max_lag`` after the unit's start, the way an interpreter trails a speaker. It may be sped up (at most
``max_ratio``) and may run on into the pause after its unit, never past the next unit's start, so two
dubs never overlap. A piece is sealed (its audio made) once no unit that could still land in it is
pending, or at its deadline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from worker.core.timing import AUDIO_RATE


@dataclass(frozen=True)
class Placement:
    start: int  # the dub's first sample on the timeline
    samples: int  # its length as placed
    ratio: float  # the speed-up applied (1.0: none)
    trimmed: int  # samples cut from its end (it did not fit even sped up)

    @property
    def end(self) -> int:
        return self.start + self.samples


def window_end(unit_end: int, next_start: int | None, clear_until: int, tail: int) -> int:
    """Where a unit's dub must end: at the next unit's start, or, with no next unit yet, where the
    detector has heard no new speech up to; never more than ``tail`` after the unit's end. Pure."""
    free = next_start if next_start is not None else max(clear_until, unit_end)
    return max(unit_end, min(free, unit_end + tail))


def place_dub(unit_start: int, end_by: int, dub: int, sealed_until: int, max_lag: int,
              max_ratio: float) -> Placement | None:
    """The dub's place, or None when it cannot start within ``max_lag`` of its unit (it falls back). Pure."""
    if dub <= 0:
        raise ValueError("an empty dub has no place")
    if max_ratio < 1.0:
        raise ValueError("max_ratio below 1 would slow speech down")
    start = max(unit_start, sealed_until)
    room = end_by - start
    if start - unit_start > max_lag or room <= 0:
        return None
    if dub <= room:
        return Placement(start, dub, 1.0, 0)
    if dub <= room * max_ratio:
        return Placement(start, room, dub / room, 0)
    return Placement(start, room, max_ratio, math.ceil(dub / max_ratio - 1e-9) - room)


@dataclass(frozen=True)
class UnitSpan:
    """What finality needs of a unit: its speech [start, end) and whether it is settled (placed, fallen
    back or failed)."""

    start: int
    end: int
    settled: bool


def piece_final(piece_start: int, piece_end: int, units: list[UnitSpan], open_since: int | None,
                heard_until: int, tail: int) -> bool:
    """Is a piece's audio final: the detector has heard past its end, no open unit started before its
    end, and no pending unit could still land a dub in it (a dub runs at most ``tail`` past its unit). Pure."""
    if heard_until < piece_end or (open_since is not None and open_since < piece_end):
        return False
    return not any(not u.settled and u.start < piece_end and u.end + tail > piece_start for u in units)


def overlap(a0: int, a1: int, b0: int, b1: int) -> tuple[int, int] | None:
    """The common part of [a0, a1) and [b0, b1), or None. Pure."""
    lo, hi = max(a0, b0), min(a1, b1)
    return (lo, hi) if lo < hi else None


def seconds(samples: int) -> float:
    return round(samples / AUDIO_RATE, 6)


def samples(t_s: float) -> int:
    return int(round(t_s * AUDIO_RATE))
