"""What the ordered publisher records once a piece is out: the segment's status and reason, the metrics,
glass-to-glass from the publisher's ffmpeg progress, and the retiring of published files. A mixin of
:class:`worker.pipeline.publisher.Publisher`, as the reader's steps are of the ingest job."""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable

from worker.core.models import StreamRecord
from worker.core.segments import TERMINAL, Reason, ReasonCode, Segment, SegmentStatus
from worker.core.settings import Settings
from worker.core.units import Segmentation, segmentation_of
from worker.media.progress import ProgressLog, wall_at
from worker.pipeline.publishing import Choice, stored_files, unit_done_before, unit_files
from worker.pipeline.sts_fragment import DUB_FORMATS
from worker.state.registry import StreamRegistry
from worker.state.store import SegmentStore, StoreError
from worker.state.units import UnitBook

log = logging.getLogger(__name__)
DUB_EXTENSIONS = tuple(sorted(set(DUB_FORMATS.values())))
UNIT_GIVE_UP_S = 60.0  # a unit this far behind the pieces going out is never placed: its files go
UNIT_BATCH = 64  # units read at once when their files are retired


class PublishLedger:
    stream_id: str
    registry: StreamRegistry
    store: SegmentStore
    settings: Settings
    clock: Callable[[], float]
    progress: ProgressLog | None
    pending: list[tuple[float, float]]  # (media start, input wall time) of pieces not yet out
    first_start: float | None
    retired: collections.deque[tuple[float, list[str], int | None]]  # (remove at, keys, units removed to)
    units: UnitBook
    unit_cursor: int | None  # speech mode: the first unit whose files are not queued for removal yet

    def _retire(self, seg: Segment, rec: StreamRecord) -> None:
        """Remove the files of segments published more than ``keep_published_s`` ago; queue this one's, and
        those of the speech units no piece from this one on needs."""
        now = self.clock()
        speech = segmentation_of(rec.segmentation, self.settings.segmentation) is Segmentation.SPEECH
        if speech and self.unit_cursor is None:  # a publisher that took over goes on where files were removed
            self.unit_cursor = rec.units_retired
        unit_keys = self._done_units(seg) if speech else []
        self.retired.append((now + self.settings.keep_published_s, [*stored_files(seg, DUB_EXTENSIONS), *unit_keys],
                             self.unit_cursor if unit_keys else None))
        while self.retired and self.retired[0][0] <= now:
            _, keys, units_to = self.retired.popleft()
            try:
                self.store.remove(keys)
            except StoreError as exc:  # the job's expiry removes them later
                log.warning("%s: could not remove published files: %s", self.stream_id, exc)
            if units_to is not None:  # only once they are gone: a successor queues the ones in flight again
                self.registry.set_fields(self.stream_id, units_retired=units_to)

    def _done_units(self, seg: Segment) -> list[str]:
        """The files of the units, in order, that no piece from ``seg`` on needs. Without this a speech-mode
        stream kept every unit's speech and dubs (about 20 MB a minute of news) and passed its disk quota
        in about an hour and a half. Units are read UNIT_BATCH at a time: a publisher that takes over a
        long stream whose record has no cursor yet catches up in a few reads, not one per unit."""
        keys: list[str] = []
        folder = seg.file.rsplit("/", 1)[0]
        assert self.unit_cursor is not None
        while True:
            batch = self.units.range(self.stream_id, self.unit_cursor, self.unit_cursor + UNIT_BATCH - 1)
            for unit in batch:
                if unit.sequence != self.unit_cursor or not unit_done_before(unit, seg.start_s, UNIT_GIVE_UP_S):
                    return keys
                where = unit.dub_key.rsplit("/", 1)[0] if unit.dub_key else folder
                keys += unit_files(where, unit.sequence, DUB_EXTENSIONS)
                self.unit_cursor += 1
            if len(batch) < UNIT_BATCH:
                return keys

    def _observe_output(self) -> None:
        """Glass-to-glass: when the publisher's ffmpeg put out a piece's first frame, minus when that
        frame entered livedub (the stream's origin plus its media time)."""
        if self.progress is None or self.first_start is None:
            return
        while self.pending:
            start_s, entered_at = self.pending[0]
            out_at = wall_at(self.progress.points, start_s - self.first_start)
            if out_at is None:
                return
            self.pending.pop(0)
            self.progress.forget_before(start_s - self.first_start)
            self.registry.metrics.observe("livedub_glass_to_glass_seconds", out_at - entered_at)
            self.registry.set_fields(self.stream_id, last_glass_to_glass_s=round(out_at - entered_at, 3))

    def _account(self, seg: Segment, choice: Choice, decided_at: float, rec: StreamRecord) -> None:
        """Record and count what went out. The A/V offsets are the ones the pipeline placed (no probe on
        this real-time path)."""
        if self.first_start is None:
            self.first_start = seg.start_s
        if rec.origin_at is not None:
            self.pending.append((seg.start_s, rec.origin_at + seg.start_s))
        offsets = {"start": seg.av_offset_start_ms, "end": seg.av_offset_end_ms}
        for edge, offset_ms in offsets.items():
            if offset_ms is not None:
                self.registry.metrics.observe("livedub_output_av_offset_seconds", abs(offset_ms) / 1000, edge=edge)
        self.registry.set_fields(self.stream_id, **{f"last_av_offset_{edge}_ms": round(ms, 1)
                                                    for edge, ms in offsets.items() if ms is not None})
        slack = (seg.deadline_at or decided_at) - decided_at
        reason = choice.reason.fields() if choice.reason else {"reason": None, "reason_code": None}
        self.registry.update_segment(self.stream_id, seg.sequence, status=choice.status, published_at=self.clock(),
                                     timings_ms={"publish_slack": slack * 1000}, **reason)
        self.registry.incr(self.stream_id, "published_count")
        self._retire(seg, rec)
        self.registry.metrics.count("livedub_segments_total", status=choice.status)
        if choice.status is SegmentStatus.PROCESSED:
            self.registry.metrics.count("media_service_worker_segments_processed_total", type="audio")
        elif choice.reason is not None:
            self.registry.metrics.count("livedub_fallbacks_total", reason=choice.reason.code)
            if choice.reason.code is ReasonCode.LATE:
                self.registry.metrics.count("livedub_late_pieces_total")

    def _fail(self, seg: Segment, reason: Reason) -> None:
        self.registry.update_segment(self.stream_id, seg.sequence, status=SegmentStatus.FAILED, **reason.fields())
        self.registry.metrics.count("livedub_segments_total", status=SegmentStatus.FAILED)

    def _fail_rest(self, k: int, reason: Reason) -> None:
        for seg in self.registry.segments(self.stream_id):
            if seg.sequence >= k and seg.status not in TERMINAL:
                self._fail(seg, reason)
