"""What an ingest run does with its reader's files, apart from the run's control flow: its clock base, its
segment list, registering failures, preparing segments, and the limits on its input (keyframes, bitrate)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from worker.core.segments import TERMINAL, Reason, ReasonCode, Segment, SegmentStatus
from worker.core.settings import Settings
from worker.core.timing import keyframe_overdue, segment_kbps
from worker.media.commands import PROGRESS, SEGMENT_LIST
from worker.media.parse import (
    ListEntry,
    log_problems,
    parse_input_start,
    parse_segment_list,
    progress_out_time_s,
    redact_keys,
)
from worker.media.run import NoVideo
from worker.pipeline.ingest_outcome import Stop, StopCause
from worker.state.registry import StreamRegistry

log = logging.getLogger(__name__)


class SegmentListTail:
    """ffmpeg's segment list (``list.csv``, appended to as each segment closes), read on from where the last
    read stopped. The ingest polls it five times a second; parsing the whole file each time cost CPU in
    proportion to the stream's age (1,800 entries an hour in speech mode: the ingest worker's own CPU
    rose from 0.12 to 0.21 of a core over an hour of three streams, 2026-11-29)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.offset = 0  # bytes of whole lines read
        self.entries: list[ListEntry] = []

    def read(self, path: Path) -> list[ListEntry]:
        """Every entry so far, in order. A line not yet ended by a newline is still being written."""
        if path != self.path:
            self.path, self.offset, self.entries = path, 0, []
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size < self.offset:  # written anew: read it from the start
                    self.offset, self.entries = 0, []
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.entries
        if (whole := data.rfind(b"\n") + 1) > 0:
            self.entries += parse_segment_list(data[:whole].decode())
            self.offset += whole
        return self.entries


class ReaderSteps:
    """The steps of :class:`worker.pipeline.ingest.StreamJob` that work on one reader's output."""

    stream_id: str
    registry: StreamRegistry
    settings: Settings
    fatal: Stop | None
    base_s: float | None
    open_since: float | None
    on_segment: Callable[[Segment], None] | None
    segment_list: SegmentListTail

    def _limit(self, limit: str, text: str) -> None:
        log.warning("%s: stopped: %s", self.stream_id, text)
        self.registry.metrics.count("livedub_limit_stops_total", limit=limit)
        self.fatal = self.fatal or Stop(StopCause.FATAL, text)

    def _check_keyframes(self, out_dir: Path, segment_s: float) -> None:
        """An input with no keyframe for a few segment lengths is stopped with the reason."""
        progress = progress_s(out_dir)
        if self.open_since is None:
            self.open_since = progress if progress > 0 else None  # the first media this reader got
            return
        limit = self.settings.max_keyframe_gap_segments
        if keyframe_overdue(progress, self.open_since, segment_s, limit):
            self._limit("keyframe", f"the input sent no keyframe for {progress - self.open_since:.0f}s (over "
                                    f"{limit:g} segments of {segment_s:g}s): livedub cuts at keyframes; set the "
                                    "encoder's keyframe interval to 2 s")

    def _check_total_disk(self, store_root: Path) -> None:
        """A new run does not start while all streams' files on this host pass the total quota."""
        limit_mb = self.settings.max_total_disk_mb
        used = disk_used(store_root)
        if limit_mb and used > limit_mb * 1024 * 1024:
            self._limit("total_disk", f"livedub's files on this host pass the total quota: {used / 2**20:.0f} MB of "
                                      f"{limit_mb} MB (LIVEDUB_MAX_TOTAL_DISK_MB); try again later")

    def _check_disk(self, out_dir: Path) -> None:
        """A stream whose files on this host pass its quota is stopped with the reason."""
        limit_mb = self.settings.max_stream_disk_mb
        used = disk_used(out_dir.parent if out_dir.name.startswith("part") else out_dir)
        if limit_mb and used > limit_mb * 1024 * 1024:
            self._limit("disk", f"the stream's files passed its disk quota: {used / 2**20:.0f} MB of {limit_mb} MB "
                                "(LIVEDUB_MAX_STREAM_DISK_MB)")

    def _check_bitrate(self, size: int, entry: ListEntry) -> None:
        kbps, limit = segment_kbps(size, entry.start_s, entry.end_s), self.settings.max_input_kbps
        if limit and kbps > limit:
            self._limit("bitrate", f"the input's bitrate ({kbps:.0f} kbit/s) is over the limit of {limit} kbit/s "
                                   "(LIVEDUB_MAX_INPUT_KBPS)")

    def _fail(self, seg: Segment, reason: Reason) -> None:
        self.registry.update_segment(self.stream_id, seg.sequence, status=SegmentStatus.FAILED, **reason.fields())
        self.registry.metrics.count("livedub_segments_total", status=SegmentStatus.FAILED)

    def _fail_unprepared(self, segments: list[Segment]) -> None:
        """Segments the dead worker registered but never finished preparing can't be published."""
        for seg in segments:
            if seg.fallback_piece is None and seg.status not in TERMINAL:
                self._fail(seg, Reason(ReasonCode.LOST_WITH_WORKER,
                                       "lost with its ingest worker before it was prepared"))

    def _read_base(self, out_dir: Path) -> None:
        """Note this reader's clock base (the input's start, from ffmpeg's log) for a takeover."""
        try:
            self.base_s = parse_input_start((out_dir / "ffmpeg.log").read_text(errors="replace")[:20000])
        except FileNotFoundError:
            return
        if self.base_s is not None:
            self.registry.set_fields(self.stream_id, reader_base_s=self.base_s)

    def _entries(self, out_dir: Path) -> list[ListEntry]:
        return self.segment_list.read(out_dir / SEGMENT_LIST)

    def _prepare(self, seg: Segment) -> None:
        assert self.on_segment is not None
        try:
            self.on_segment(seg)
        except NoVideo as exc:
            self.fatal = Stop(StopCause.FATAL, str(exc))
            self._fail(seg, Reason(ReasonCode.NO_VIDEO, str(exc)))
        except Exception as exc:
            log.exception("%s: segment %d could not be prepared", self.stream_id, seg.sequence)
            self._fail(seg, Reason(ReasonCode.PREPARE_FAILED, str(exc)))


def disk_used(root: Path) -> int:
    """Bytes the files under ``root`` take on disk (sparse parts not counted)."""
    used = 0
    for f in root.rglob("*"):
        try:
            used += f.stat().st_blocks * 512 if f.is_file() else 0
        except FileNotFoundError:  # removed meanwhile (a published segment's)
            continue
    return used


def progress_s(out_dir: Path) -> float:
    """How far the reader got, in its clock (0: no media yet)."""
    try:
        with open(out_dir / PROGRESS, "rb") as f:
            f.seek(0, 2)
            f.seek(max(f.tell() - 600, 0))
            return progress_out_time_s(f.read().decode(errors="replace"))
    except FileNotFoundError:
        return 0.0


def log_tail(path: Path, n: int = 300) -> str:
    try:
        text = redact_keys(log_problems(path.read_text(errors="replace"))).strip()
    except OSError:
        return "no log"
    return text[-n:].replace("\n", " | ") or "no output"
