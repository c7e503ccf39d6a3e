"""Segment extraction: turn a completed segment into chain work and a fallback piece.

For each segment: probe its video span, place it on the stream's timeline with its audio boundaries on
AAC frames (:func:`plan_segment`), cut its original audio from the continuous track, record it, start
its chain, then build its fallback piece (the original audio, aligned the same way), so the publisher
always has something for every deadline. In speech mode the fallback comes first and the piece then goes
to the speech tracker: a piece with no dub on it goes out as its fallback, not encoded twice. Each step
is a function of its own; the benchmark calls them.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from worker.core.messages import PieceWork, SegmentWork
from worker.core.segments import Segment
from worker.core.settings import Settings
from worker.core.timing import (
    AAC_FRAME,
    FRAME_BYTES,
    SEAM_AHEAD,
    SEAM_LEAD,
    audio_boundary,
    first_placement,
    output_delay_s,
    plan_segment,
    planned_av_offsets_ms,
    resumed_offset,
    slice_plan,
    to_us,
)
from worker.media.commands import AUDIO_TRACK, piece_args
from worker.media.demux import video_span
from worker.media.run import NoVideo, run_media
from worker.state.registry import StreamRegistry
from worker.state.store import SegmentStore

if TYPE_CHECKING:
    from worker.pipeline.speech import SpeechTracker

log = logging.getLogger(__name__)
CHUNK_BYTES = 64 * 1024
# The fallback piece is needed at the piece's deadline, about 4 s away; the remux of the piece before it is
# needed within 0.8 s: on shared cores the fallback's encode yields (three speech-mode streams on 2 cores).
FALLBACK_NICE = 10


@dataclass
class StreamPlan:
    segment_seconds: float
    source_language: str
    target_language: str
    voice_profile: str


def probe_video_span(segment: Path) -> tuple[float, float]:
    """(first pts, end) of a segment's video in its reader's clock; NoVideo when it has none."""
    span = video_span(segment)
    if span is None:
        raise NoVideo("input has no video track livedub can read: it dubs H.264 video streams "
                      "(H.265 over enhanced RTMP does not pass nginx-rtmp)")
    return span


def copy_samples(track: Path, b0: int, b1: int, dest: Path) -> None:
    """Samples [b0, b1) of a PCM track into ``dest``, silence where the track has none. Copied in small
    chunks: many stream threads allocating megabyte buffers each segment make a worker's memory grow."""
    size = track.stat().st_size if track.exists() else 0
    copy, pad = slice_plan(size, b0, b1, FRAME_BYTES)
    with open(dest, "wb") as out:
        if copy:
            with open(track, "rb") as f:
                f.seek(b0 * FRAME_BYTES)
                while copy > 0 and (chunk := f.read(min(CHUNK_BYTES, copy))):
                    out.write(chunk)
                    copy -= len(chunk)
            pad += copy  # the track was shorter than its size said
        while pad > 0:
            out.write(bytes(min(CHUNK_BYTES, pad)))
            pad -= min(CHUNK_BYTES, pad)


_libc = ctypes.CDLL(None, use_errno=True)
PUNCH_HOLE = 0x01 | 0x02  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE


def release_before(track: Path, upto_bytes: int) -> None:
    """Free the disk blocks of the continuous track before ``upto_bytes`` (already cut into segments):
    offsets stay valid, the file stays its size, the disk holds only what is still to be read. Where the
    filesystem cannot punch holes, nothing happens."""
    if upto_bytes <= 0:
        return
    try:
        fd = os.open(track, os.O_WRONLY)
    except OSError:
        return
    try:
        _libc.fallocate(fd, PUNCH_HOLE, ctypes.c_long(0), ctypes.c_long(upto_bytes))
    finally:
        os.close(fd)


class SegmentPreparer:
    def __init__(
        self, stream_id: str, job_id: str, out_dir: Path, *, registry: StreamRegistry, store: SegmentStore,
        settings: Settings, plan: StreamPlan, start_chain: Callable[[SegmentWork], None],
        start_publisher: Callable[[], None], reader_alive: Callable[[], bool],
        clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
        offset_s: float | None = None, speech: SpeechTracker | None = None, latency_s: float | None = None,
    ) -> None:
        self.stream_id, self.job_id, self.out_dir = stream_id, job_id, out_dir
        self.registry, self.store, self.settings, self.plan = registry, store, settings, plan
        self.start_chain, self.start_publisher, self.reader_alive = start_chain, start_publisher, reader_alive
        self.clock, self.sleep = clock, sleep
        self.origin_at: float | None = None
        self.offset_s = 0.0
        self.takeover_offset_s = offset_s  # a reader taken over: its clock's place is known exactly
        self.speech, self.latency_s = speech, latency_s  # speech mode: pieces go to the tracker
        self.speech_stop = threading.Event()
        self.speech_thread: threading.Thread | None = None
        self.delay_s = latency_s or output_delay_s(plan.segment_seconds, settings.latency_budget_s)

    def __call__(self, seg: Segment) -> None:
        completed_at = self.clock()
        seg_path = self.out_dir / PurePosixPath(seg.file).name  # written by this host's reader
        local = probe_video_span(seg_path)
        if self.origin_at is None:
            self.place(self.clock(), local)
            if self.speech is not None:
                assert self.origin_at is not None
                self.speech.start(self.origin_at, self.delay_s, self.offset_s, local[1] - local[0],
                                  from_s=local[0] + self.offset_s)
                self.speech_thread = threading.Thread(target=self.speech.run, args=(self.speech_stop,),
                                                      name=f"speech-{self.stream_id}", daemon=True)
                self.speech_thread.start()
        assert self.origin_at is not None
        plan = plan_segment(local, self.offset_s, self.origin_at, self.delay_s, self.settings.publish_margin_s)
        orig_path = self.out_dir / f"orig_{seg.sequence:05d}.pcm"
        # speech mode: the audio around the piece too, for a seamless encode (``piece_args``)
        lead, ahead = (min(SEAM_LEAD, plan.b0 // AAC_FRAME * AAC_FRAME), SEAM_AHEAD) if self.speech else (0, 0)
        self.wait_for_audio(plan.b1 + ahead)
        copy_samples(self.out_dir / AUDIO_TRACK, plan.b0 - lead, plan.b1 + ahead, orig_path)
        keep = min(plan.b0, k) if self.speech is not None and (k := self.speech.keep_from()) is not None else plan.b0
        release_before(self.out_dir / AUDIO_TRACK, keep * FRAME_BYTES)  # earlier samples are never read again
        extract_s = self.clock() - completed_at
        av_start, av_end = planned_av_offsets_ms(local, plan.b0, plan.b1)
        self.registry.update_segment(self.stream_id, seg.sequence, start_s=plan.start_s, end_s=plan.end_s,
                                     audio_start_sample=plan.b0, audio_samples=plan.samples,
                                     deadline_at=plan.deadline_at, completed_at=completed_at,
                                     av_offset_start_ms=round(av_start, 3), av_offset_end_ms=round(av_end, 3),
                                     timings_ms={"extract": extract_s * 1000})
        self.registry.metrics.observe("livedub_stage_duration_seconds", extract_s, stage="extract")
        segment_key, orig_key = self.store.put(seg_path), self.store.put(orig_path)  # for the other hosts
        if self.speech is not None:
            # its fallback first: a piece with no dub goes out as it (the remux does not encode it again)
            self.fallback(seg.sequence, seg_path, orig_path, plan.b0, lead, plan.samples)
            self.speech.add_piece(PieceWork(
                stream_id=self.stream_id, job_id=self.job_id, sequence=seg.sequence, segment_key=segment_key,
                orig_key=orig_key, timeline_sample=audio_boundary(to_us(plan.start_s)), audio_start_sample=plan.b0,
                audio_samples=plan.samples, deadline_at=plan.deadline_at, ts_offset_s=self.offset_s,
                lead_samples=lead))
        else:
            self.start_chain(SegmentWork(
                stream_id=self.stream_id, job_id=self.job_id, sequence=seg.sequence, segment_key=segment_key,
                orig_key=orig_key, start_s=plan.start_s, end_s=plan.end_s,
                audio_start_sample=plan.b0, audio_samples=plan.samples, deadline_at=plan.deadline_at,
                source_language=self.plan.source_language, target_language=self.plan.target_language,
                voice_profile=self.plan.voice_profile, ts_offset_s=self.offset_s,
            ))
            self.fallback(seg.sequence, seg_path, orig_path, plan.b0, 0, None)

    def fallback(self, sequence: int, seg_path: Path, orig_path: Path, b0: int, lead: int,
                 samples: int | None) -> None:
        """The piece with its original audio, for its deadline if nothing better is ready by then."""
        fallback = self.out_dir / f"fallback_{sequence:05d}.ts"
        run_media(piece_args(self.settings.ffmpeg_bin, seg_path, orig_path, b0 - lead, fallback,
                             self.settings.audio_bitrate, self.offset_s, samples=samples, lead=lead),
                  nice=FALLBACK_NICE)
        fallback_key = self.store.put(fallback)
        self.store.discard(seg_path, orig_path, fallback)
        self.registry.update_segment(self.stream_id, sequence, fallback_piece=fallback_key)

    def hand_over_at(self, seam_s: float) -> None:
        """The reader is handed over at ``seam_s`` (this reader's clock): speech after it is the successor's."""
        if self.speech is not None:
            self.speech.stop_at(seam_s + self.offset_s)

    def finish(self, alive: Callable[[], bool]) -> None:
        """The reader stopped (speech mode): the open unit closes, and every piece is sealed (each by its
        deadline at the latest) while the job still holds the stream (``alive``)."""
        self.speech_stop.set()
        if self.speech_thread is not None:
            self.speech_thread.join(5)
        if self.speech is None or self.speech.at is None:
            return
        self.speech.hear()
        self.speech.flush()
        while not self.speech.done and alive():
            self.speech.seal_due()
            self.sleep(0.1)

    def place(self, now: float, local: tuple[float, float]) -> None:
        """Put this reader's clock on the stream's timeline, once, at its first segment."""
        rec = self.registry.get(self.stream_id, with_segments=False)
        if rec is None or rec.origin_at is None:
            self.origin_at, self.delay_s = first_placement(now, local, self.plan.segment_seconds,
                                                           self.settings.latency_budget_s, self.latency_s)
            self.registry.set_fields(self.stream_id, origin_at=self.origin_at, output_delay_s=self.delay_s,
                                     reader_offset_s=0.0)
            self.start_publisher()
            return
        # A reader taken over at a seam, or resumed (the last ingest worker died, the input was re-published).
        self.origin_at, self.delay_s = rec.origin_at, rec.output_delay_s or self.delay_s
        last_end = max((s.end_s for s in self.registry.segments(self.stream_id) if s.deadline_at), default=0.0)
        self.offset_s = self.takeover_offset_s if self.takeover_offset_s is not None \
            else resumed_offset(now, self.origin_at, local, last_end)
        gap = local[0] + self.offset_s - last_end
        self.registry.set_fields(self.stream_id, last_gap_s=round(gap, 3), reader_offset_s=self.offset_s)
        self.registry.metrics.observe("livedub_input_gap_seconds", gap)

    def wait_for_audio(self, b1: int, wait_s: float = 1.5) -> None:
        """Wait (bounded) for the reader to write the continuous track up to sample ``b1``."""
        track = self.out_dir / AUDIO_TRACK
        deadline = self.clock() + wait_s
        while (track.stat().st_size if track.exists() else 0) < b1 * FRAME_BYTES and self.reader_alive():
            if self.clock() > deadline:
                log.warning("%s: audio track short of sample %d; padding with silence", self.stream_id, b1)
                return
            self.sleep(0.02)
