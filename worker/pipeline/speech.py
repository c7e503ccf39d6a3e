"""Segment extraction, speech mode: speech units from the continuous audio track, and the seal of each
video piece once its audio is final.

Runs in the ingest job, beside the reader: every poll it reads what the reader added to the track, runs
the detector, closes units (:class:`UnitCutter`) and starts each unit's chain (STS-dispatch -> collect,
which places the dub). Pieces (keyframe segments) come from the segment preparer; each is sealed, and
its remux started, once no pending unit can still land in it or at its deadline (:class:`PieceSeal`,
worker/pipeline/speech_seal.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from worker.core.messages import PieceWork, UnitWork
from worker.core.placement import UnitSpan
from worker.core.segments import SegmentStatus
from worker.core.settings import Settings
from worker.core.speech import (
    CHAIN_SAMPLES,
    HEAR_SAMPLES,
    CutKind,
    CutParams,
    CutUnit,
    UnitCutter,
    chain_estimate_s,
    dub_piece_start_s,
    hear_estimate_s,
    max_unit_s,
    unit_budget_s,
)
from worker.core.timing import AUDIO_RATE, FRAME_BYTES, piece_deadline
from worker.core.units import Unit, goes_on
from worker.media.commands import AUDIO_TRACK
from worker.media.vad import CHUNK_BYTES, SpeechDetector
from worker.pipeline.prepare import copy_samples
from worker.pipeline.speech_seal import REMUX_RESERVE_S, TRACK_FRAME, Clock, PieceSeal
from worker.state.registry import StreamRegistry
from worker.state.store import SegmentStore
from worker.state.units import UnitBook
from worker.sts.bounds import skip_after

log = logging.getLogger(__name__)
READ_FRAMES = 64  # at most this many frames (2 s) per read
POLL_S = 0.05
LATE_STEP_S = 0.5  # a unit whose dub came too late counts as the estimate it had and this much more
HEAR_START_S = 0.2  # how late the detector is taken to hear the track until its reads say


class SpeechTracker(PieceSeal):
    def __init__(self, stream_id: str, job_id: str, out_dir: Path, *, registry: StreamRegistry,
                 store: SegmentStore, settings: Settings, languages: tuple[str, str, str], latency_s: float,
                 start_unit: Callable[[UnitWork], None], start_remux: Callable[[PieceWork], None],
                 detector: SpeechDetector | None = None, clock: Callable[[], float] = time.time) -> None:
        self.stream_id, self.job_id, self.out_dir = stream_id, job_id, out_dir
        self.registry, self.store, self.settings = registry, store, settings
        self.units = UnitBook(registry)
        self.languages = languages
        self.start_unit, self.start_remux, self.clock = start_unit, start_remux, clock
        self.detector = detector or SpeechDetector()
        self.chains: deque[float] = deque(maxlen=CHAIN_SAMPLES)  # the last units' round trips
        self.sts_s = settings.sts_estimate_s  # the round trip the units' lengths allow for now
        self.hears: deque[float] = deque(maxlen=HEAR_SAMPLES)  # the last reads' lags
        self.hear_s = HEAR_START_S  # how late the detector hears the track, as the units' lengths allow for
        self.live = False  # caught up with what the reader wrote before this run started: reads are timed
        self.cutter = UnitCutter(self._params(latency_s, 0.0))
        self.tail = round((settings.max_lag_s + 0.5) * AUDIO_RATE)
        self.at: Clock | None = None
        self.read_bytes = 0  # of the track, fed to the detector
        self.heard = -1  # the timeline sample the record's heard_until_s says
        self.recent: list[tuple[int, int]] = []  # the last units: (sequence, timeline end sample)
        self.next_seq = 0
        self.last_closed: int | None = None  # the last unit's sequence, until the next one opens
        self.pending: dict[int, UnitSpan] = {}  # units not settled yet (timeline samples)
        self.pieces: list[tuple[PieceWork, int]] = []  # not sealed yet: (work, timeline end sample)
        self.was_open = False
        self.lock = threading.Lock()
        self.keyframes: list[float] = []  # the last pieces' starts (timeline s)
        self.piece_s = 0.0  # the last piece's length
        self.frame0 = 0  # the cutter's frame 0 in the detector frames of this reader's track
        self.until: int | None = None  # handed over: the seam (timeline sample); nothing after it is heard

    def _params(self, delay_s: float, piece_s: float) -> CutParams:
        s = self.settings
        longest = max_unit_s(delay_s, s.max_lag_s, s.publish_margin_s, REMUX_RESERVE_S, self.hear_s,
                             self.sts_s, piece_s)
        return CutParams(min_pause_s=s.min_pause_s, min_unit_s=s.min_unit_s, max_unit_s=longest)

    def start(self, origin_at: float, delay_s: float, offset_s: float, piece_s: float = 0.0,
              from_s: float = 0.0) -> None:
        """The reader's clock is placed (its first segment starts at ``from_s`` on the timeline and is
        ``piece_s`` long: keyframes that far apart): units can be put on the timeline. A later run of the
        job (a takeover at a seam, a resumed input) goes on with the numbering, hears nothing before its
        first piece nor what the runs before it heard, and waits for their units still in flight."""
        self.at = Clock(origin_at, delay_s, round(offset_s * AUDIO_RATE))
        if piece_s > 0:  # the first segment's start is a keyframe: a unit that opens before its piece is
            with self.lock:  # handed over (add_piece) has the budget of the keyframes to come
                self.keyframes, self.piece_s = [*self.keyframes[-9:], from_s], piece_s
        known = self.units.all(self.stream_id)
        for u in known[-CHAIN_SAMPLES:]:  # a run that goes on starts from the round trips its stream saw
            self._note_round_trip(u)
        self.registry.set_fields(self.stream_id, sts_estimate_s=self.sts_s)
        self.cutter.params = self._params(delay_s, piece_s)
        self.cutter.longest = self.longest
        log.info("%s: speech units of at most %.2fs", self.stream_id, self.cutter.params.max_unit_s)
        self.next_seq = max((u.sequence + 1 for u in known), default=0)
        heard_s = max([from_s, *(u.end_s for u in known)])
        local = max(0, round(heard_s * AUDIO_RATE) - self.at.shift)
        self.frame0 = -(-local // TRACK_FRAME)
        self.read_bytes = self.frame0 * CHUNK_BYTES
        for u in known[-32:]:  # their dubs may land in this run's pieces: seal and remux with them in view
            span = UnitSpan(round(u.start_s * AUDIO_RATE), round(u.end_s * AUDIO_RATE), False)
            self.recent.append((u.sequence, span.end))
            if u.status is SegmentStatus.EXTRACTED:
                self.pending[u.sequence] = span

    def stop_at(self, seam_s: float) -> None:
        """Handed over at ``seam_s`` (timeline): the successor hears from there; this run hears up to it
        and its open unit closes there at the latest."""
        self.until = round(seam_s * AUDIO_RATE)

    # the thread ------------------------------------------------------------
    def run(self, stop: threading.Event, poll_s: float = POLL_S) -> None:
        """Hear and seal until ``stop``, in a thread of its own: preparing a segment (probe, copies, the
        fallback piece) never delays a unit's close or a piece's seal."""
        while not stop.is_set():
            try:
                self.hear()
                self.seal_due()
            except Exception:  # a Redis blip or a bad read: the next round tries again
                log.exception("%s: speech tracker round failed", self.stream_id)
            stop.wait(poll_s)

    def keep_from(self) -> int | None:
        """The first track sample still needed (an open unit's audio), in the reader's clock."""
        start = self.cutter.open_since
        return None if start is None else (start + self.frame0) * TRACK_FRAME

    # the detector ------------------------------------------------------------
    def hear(self) -> None:
        """Feed what the reader added to the track; close and dispatch units."""
        if self.at is None:
            return
        track = self.out_dir / AUDIO_TRACK
        size = track.stat().st_size if track.exists() else 0
        if self.until is not None:
            size = min(size, (self.until - self.at.shift) * FRAME_BYTES)
        while size - self.read_bytes >= CHUNK_BYTES:
            n = min((size - self.read_bytes) // CHUNK_BYTES, READ_FRAMES)
            with open(track, "rb") as f:
                f.seek(self.read_bytes)
                data = f.read(n * CHUNK_BYTES)
            n = len(data) // CHUNK_BYTES
            if n == 0:
                break
            first_s = self._heard() / AUDIO_RATE
            self.read_bytes += n * CHUNK_BYTES
            probs, energies = self.detector.frames(data[: n * CHUNK_BYTES])
            for cut in self.cutter.feed(probs, energies):
                self._dispatch(cut)
            self._note_open()
            if self.live:  # a unit that closed in this read closed this late
                self._note_heard(self.clock() - self.at.origin_at - first_s)
        self.live = True
        heard = self._heard()
        if heard != self.heard:  # a write only when the detector heard more, not every poll
            self.heard = heard
            self.registry.set_fields(self.stream_id, heard_until_s=round(heard / AUDIO_RATE, 6))

    def flush(self) -> None:
        """The input ended (or the reader stopped): the open unit closes where its speech ended."""
        if self.at is not None and (cut := self.cutter.flush()) is not None:
            self._dispatch(cut)

    def _note_open(self) -> None:
        """A unit opened: the unit before it learns where the next speech starts (its dub stops there)."""
        opened = self.cutter.open_since is not None
        if opened and not self.was_open and self.last_closed is not None and self.at is not None:
            start = ((self.cutter.open_since or 0) + self.frame0) * TRACK_FRAME + self.at.shift
            self.units.update(self.stream_id, self.last_closed, next_start_s=round(start / AUDIO_RATE, 6))
            self.last_closed = None
        self.was_open = opened

    def _dispatch(self, cut: CutUnit) -> None:
        assert self.at is not None
        b0, b1 = (cut.start + self.frame0) * TRACK_FRAME, (cut.end + self.frame0) * TRACK_FRAME
        t0, t1 = (b0 + self.at.shift) / AUDIO_RATE, (b1 + self.at.shift) / AUDIO_RATE
        seq, now = self.next_seq, self.clock()
        self.next_seq += 1
        if self.last_closed is not None:
            self.units.update(self.stream_id, self.last_closed, next_start_s=round(t0, 6))
        with self.lock:
            reach = dub_piece_start_s(t0, list(self.keyframes), self.piece_s, self.settings.max_lag_s)
        deadline = piece_deadline(self.at.origin_at, reach, self.at.delay_s,
                                  self.settings.publish_margin_s) - REMUX_RESERVE_S  # that piece's seal
        unit = Unit(sequence=seq, start_s=round(t0, 6), end_s=round(t1, 6), cut=cut.kind, closed_at=now,
                    deadline_at=deadline, next_start_s=round(t1, 6) if cut.kind is CutKind.QUIET else None,
                    clear_until_s=round(((cut.free_until + self.frame0) * TRACK_FRAME + self.at.shift) / AUDIO_RATE, 6))
        self.units.add(self.stream_id, unit)
        self.last_closed = None if cut.kind is CutKind.QUIET else seq
        self.pending[seq] = UnitSpan(b0 + self.at.shift, b1 + self.at.shift, False)
        self.recent = [*self.recent[-31:], (seq, b1 + self.at.shift)]
        # cut inside speech: the speech after the cut, as far as it was heard, goes with it (worker/sts/bounds.py)
        look = 0 if cut.kind is not CutKind.QUIET else \
            max(0, min(round(self.settings.speech_lookahead_s * AUDIO_RATE), self.read_bytes // FRAME_BYTES - b1))
        path = self.out_dir / f"unit_{seq:05d}.pcm"
        copy_samples(self.out_dir / AUDIO_TRACK, b0, b1 + look, path)
        key = self.store.put(path)
        self.store.discard(path)
        before = self.units.get(self.stream_id, seq - 1) if seq else None
        goes = goes_on(before, unit)
        source, target, voice = self.languages
        self.start_unit(UnitWork(
            stream_id=self.stream_id, job_id=self.job_id, sequence=seq, orig_key=key, start_s=unit.start_s,
            end_s=unit.end_s, audio_samples=b1 - b0, look_samples=look, deadline_at=deadline,
            source_language=source, target_language=target, voice_profile=voice,
            context=(before.transcript or "") if before else "", continues_sentence=goes,
            skip_s=skip_after(before.spoken_until_s, unit.start_s) if before and goes else 0.0))
        log.info("%s: unit %d [%.2f, %.2f] (%s)", self.stream_id, seq, t0, t1, cut.kind.value)

    def longest(self, start_frame: int) -> int:
        """The longest the unit opened at ``start_frame`` may be, in detector frames, from where the video's
        keyframes put the piece its dub must reach before that piece is sealed."""
        assert self.at is not None
        s = self.settings
        start_s = ((start_frame + self.frame0) * TRACK_FRAME + self.at.shift) / AUDIO_RATE
        with self.lock:
            keyframes, piece_s = list(self.keyframes), self.piece_s
        budget = unit_budget_s(start_s, keyframes, piece_s, self.at.delay_s, s.max_lag_s, s.publish_margin_s,
                               REMUX_RESERVE_S, self.hear_s, self.sts_s)
        return self.cutter.params.frames(budget)

    def _note_heard(self, lag_s: float) -> None:
        """A read's lag: how late the detector heard its first frame, which sets how long units may be."""
        self.hears.append(lag_s)
        estimate = hear_estimate_s(self.hears, HEAR_START_S)
        if abs(estimate - self.hear_s) >= 0.01:
            self.hear_s = estimate
            self.registry.set_fields(self.stream_id, hear_estimate_s=estimate)

    def _note_round_trip(self, unit: Unit) -> None:
        """A unit settled: its round trip (close to placed) sets how long the next units may be."""
        if not self.settings.sts_estimate_adaptive or (took := unit.round_trip_s(self.sts_s + LATE_STEP_S)) is None:
            return
        self.chains.append(took)
        estimate = chain_estimate_s(list(self.chains), self.settings.sts_estimate_s)
        if abs(estimate - self.sts_s) >= 0.05:
            self.sts_s = estimate
            self.registry.set_fields(self.stream_id, sts_estimate_s=estimate)
            log.info("%s: units now allow %.2fs for the STS round trip", self.stream_id, estimate)
