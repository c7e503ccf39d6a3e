"""Speech mode's seal: each video piece is sealed, and its remux started, once no pending unit can still
land in it (:func:`piece_final`) or at its deadline; a unit whose chain is overdue falls back. A mixin of
:class:`worker.pipeline.speech.SpeechTracker`, as the publish ledger is of the publisher."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from worker.core.messages import PieceWork
from worker.core.placement import UnitSpan, piece_final
from worker.core.segments import Reason, ReasonCode, SegmentStatus
from worker.core.settings import Settings
from worker.core.speech import UnitCutter
from worker.core.timing import AUDIO_RATE, FRAME_BYTES
from worker.core.units import Unit
from worker.media.vad import DECIMATE, FRAME
from worker.state.units import UnitBook

LOST = Reason(ReasonCode.LATE, "no dub came by the time the unit's start was on air")
REMUX_RESERVE_S = 0.8  # a piece is sealed this long before its deadline at the latest
TRACK_FRAME = FRAME * DECIMATE  # track samples per detector frame
OVERDUE_S = 2.0  # a unit still unsettled this long after its dub's latest start falls back


@dataclass(frozen=True)
class Clock:
    """Where this reader's clock sits: timeline = local + shift (samples); the output's origin and delay."""

    origin_at: float
    delay_s: float
    shift: int


class PieceSeal:
    stream_id: str
    settings: Settings
    units: UnitBook
    clock: Callable[[], float]
    start_remux: Callable[[PieceWork], None]
    cutter: UnitCutter
    at: Clock | None
    read_bytes: int
    frame0: int
    tail: int
    recent: list[tuple[int, int]]  # the last units: (sequence, timeline end sample)
    next_seq: int
    pending: dict[int, UnitSpan]  # units not settled yet (timeline samples)
    pieces: list[tuple[PieceWork, int]]  # not sealed yet: (work, timeline end sample)
    lock: threading.Lock
    keyframes: list[float]  # the last pieces' starts (timeline s)
    piece_s: float  # the last piece's length

    def _note_round_trip(self, unit: Unit) -> None:
        raise NotImplementedError

    def add_piece(self, work: PieceWork) -> None:
        with self.lock:
            self.pieces.append((work, work.timeline_sample + work.audio_samples))
            self.keyframes = [*self.keyframes[-9:], work.timeline_sample / AUDIO_RATE]
            self.piece_s = work.audio_samples / AUDIO_RATE

    def seal_due(self) -> int:
        """Seal, in order, the pieces whose audio is final or whose deadline is near; start their remux."""
        if not self.pieces:
            return 0
        self.refresh()
        assert self.at is not None
        open_since = self.cutter.open_since
        opened = None if open_since is None else (open_since + self.frame0) * TRACK_FRAME + self.at.shift
        heard = self._heard()
        sealed, now = 0, self.clock()
        while self.pieces:
            work, end = self.pieces[0]
            final = piece_final(work.timeline_sample, end, list(self.pending.values()), opened, heard, self.tail)
            if not final and now < work.deadline_at - REMUX_RESERVE_S:
                break
            with self.lock:
                self.pieces.pop(0)
            if self.units.seal(self.stream_id, work.sequence, round(end / AUDIO_RATE, 6)):
                # The units whose dubs may be in it: none closed later can be placed before the seal.
                first = min((q for q, e in self.recent if e + self.tail > work.timeline_sample), default=self.next_seq)
                self.start_remux(work.model_copy(update={"first_unit": first, "last_unit": self.next_seq - 1}))
                sealed += 1
        return sealed

    def refresh(self) -> None:
        """Units settled since the last round leave ``pending`` (their round trips noted); one overdue falls
        back."""
        if not self.pending:
            return
        seqs = sorted(self.pending)
        for u in self.units.range(self.stream_id, seqs[0], seqs[-1]):
            if u.sequence in self.pending and u.status is not SegmentStatus.EXTRACTED:
                del self.pending[u.sequence]
                self._note_round_trip(u)
        now = self.clock()
        for seq in [s for s in self.pending if self._overdue(s, now)]:
            # Its chain was lost (a worker died mid-task) or is that late: the original goes out under it.
            self.units.settle(self.stream_id, seq, SegmentStatus.FALLBACK, LOST)
            del self.pending[seq]
            if (lost := self.units.get(self.stream_id, seq)) is not None:
                self._note_round_trip(lost)

    def _heard(self) -> int:
        """The timeline sample the detector has heard up to."""
        assert self.at is not None
        return self.read_bytes // FRAME_BYTES + self.at.shift

    def _overdue(self, seq: int, now: float) -> bool:
        assert self.at is not None
        span = self.pending[seq]
        return now > self.at.origin_at + span.start / AUDIO_RATE + self.at.delay_s + self.settings.max_lag_s + OVERDUE_S

    @property
    def done(self) -> bool:
        return not self.pieces
