"""The ordered publisher's decisions, as pure functions: what to feed for a segment, what to do next.

:class:`worker.pipeline.publisher.Publisher` runs the loop and does the I/O; everything it decides is
decided here, from the segment, the stream's record and the clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from worker.core.models import StreamRecord, StreamState
from worker.core.segments import LATE, TERMINAL, DubOutcome, Reason, Segment, SegmentStatus
from worker.core.timing import poll_delay
from worker.core.units import Unit


@dataclass(frozen=True)
class Choice:
    key: str
    status: SegmentStatus  # processed | fallback
    reason: Reason | None


def choose(seg: Segment, now: float) -> Choice | None:
    """What to feed for a segment now, or None to keep waiting."""
    if seg.dub is DubOutcome.READY and seg.piece:
        return Choice(seg.piece, SegmentStatus.PROCESSED, None)
    if seg.fallback_piece is None:
        return None
    fallback = seg.dub_fallback
    if fallback is not None:
        return Choice(seg.fallback_piece, SegmentStatus.FALLBACK, fallback)
    if seg.deadline_at is not None and now >= seg.deadline_at:
        return Choice(seg.fallback_piece, SegmentStatus.FALLBACK, LATE)
    return None


def stored_files(seg: Segment, dub_extensions: tuple[str, ...]) -> list[str]:
    """Every key a segment's chain may have put in the store (its cut, original audio, fallback, fit, dub and
    piece): what is removed once the segment is published and a grace has passed. Pure."""
    folder, seq = seg.file.rsplit("/", 1)[0], f"{seg.sequence:05d}"
    names = [f"orig_{seq}.pcm", f"fallback_{seq}.ts", f"fit_{seq}.pcm", f"piece_{seq}.ts",
             *(f"dub_{seq}.{ext}" for ext in dub_extensions)]
    return [seg.file, *(f"{folder}/{n}" for n in names)]


def unit_files(folder: str, sequence: int, dub_extensions: tuple[str, ...]) -> list[str]:
    """Every key a speech unit's chain may have put in the store (its speech, its dub as the STS service
    sent it, the dub placed on the timeline). Pure."""
    seq = f"{sequence:05d}"
    return [f"{folder}/unit_{seq}.pcm", f"{folder}/placed_u{seq}.pcm",
            *(f"{folder}/dub_u{seq}.{ext}" for ext in dub_extensions)]


def unit_done_before(unit: Unit, start_s: float, give_up_s: float) -> bool:
    """No piece from ``start_s`` on needs the unit's files: its dub (or, with none, its speech) ended before
    ``start_s`` and it is settled, or it ended ``give_up_s`` before and never will be. Pure."""
    end = unit.dub_end_s if unit.dub_end_s is not None else unit.end_s
    return end <= start_s and (unit.settled or unit.end_s + give_up_s <= start_s)


class Action(enum.Enum):
    FEED = "feed"  # write the chosen piece, go on with the next segment
    WAIT = "wait"  # nothing to decide yet: look again after wait_s
    STALL = "stall"  # past the deadline with nothing to feed at all (counted)
    SKIP = "skip"  # the segment failed before it was prepared: nothing to feed
    HOLD = "hold"  # every piece is out; the input may still be re-published within the grace
    END = "end"  # every piece is out: seal the stream
    ABANDON = "abandon"  # the stream ended before this segment was prepared


@dataclass(frozen=True)
class Decision:
    action: Action
    choice: Choice | None = None
    wait_s: float = 0.0


def resume_point(segments: list[Segment]) -> int:
    """Where a (re)started publisher begins: the first segment not yet out."""
    return next((s.sequence for s in segments if s.status not in TERMINAL), len(segments))


def in_republish_grace(rec: StreamRecord, now: float, grace_s: float) -> bool:
    """The input dropped (the operator did not stop it) less than ``grace_s`` ago: keep the output up."""
    return (rec.state is StreamState.DRAINING and not rec.stop_requested and rec.ended_input_at is not None
            and now < rec.ended_input_at + grace_s)


def decide(k: int, seg: Segment | None, rec: StreamRecord, now: float, republish_grace_s: float) -> Decision:
    """What the publisher does about segment ``k`` now."""
    final = rec.segments_final
    if final is not None and k >= final:
        if in_republish_grace(rec, now, republish_grace_s):
            return Decision(Action.HOLD, wait_s=0.1)
        return Decision(Action.END)
    if seg is not None and seg.status is SegmentStatus.FAILED:
        return Decision(Action.SKIP)
    if seg is None or seg.deadline_at is None:
        if rec.state in (StreamState.ENDED, StreamState.FAILED) and final is None:
            return Decision(Action.ABANDON)
        return Decision(Action.WAIT, wait_s=poll_delay(now, None))
    choice = choose(seg, now)
    if choice is not None:
        return Decision(Action.FEED, choice)
    if seg.fallback_piece is None and now > seg.deadline_at:
        return Decision(Action.STALL, wait_s=0.2)  # counted once per 0.2 s of stall
    return Decision(Action.WAIT, wait_s=poll_delay(now, seg.deadline_at))
