"""Ingest side of the pipeline: turn a completed segment into a chain message and a fallback piece.

For each segment: probe its video span, put its audio boundaries on AAC frames, cut its original
audio from the continuous track, record it, start its chain, then build its fallback piece (the
original audio, aligned the same way), so the publisher always has something for every deadline.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worker import metrics
from worker.models import ChainMsg, Segment
from worker.pieces import FRAME_BYTES, parse_video_span, piece_args, video_span_args
from worker.registry import StreamRegistry
from worker.settings import Settings
from worker.store import LocalSegmentStore
from worker.timing import audio_boundary, output_delay_s, piece_deadline, slice_plan, to_us

log = logging.getLogger(__name__)
AUDIO_TRACK = "audio.pcm"
CHUNK_BYTES = 64 * 1024


class MediaError(RuntimeError):
    pass


def run_media(args: list[str], timeout_s: float = 60) -> str:
    """Run one ffmpeg/ffprobe command; MediaError with the end of its stderr when it fails."""
    out = subprocess.run(args, capture_output=True, timeout=timeout_s)
    if out.returncode != 0:
        raise MediaError(f"{Path(args[0]).name} exited {out.returncode}: "
                         f"{out.stderr.decode(errors='replace').strip()[-300:]}")
    return out.stdout.decode(errors="replace")


class NoVideo(MediaError):
    pass


@dataclass
class StreamPlan:
    segment_seconds: float
    source_language: str
    target_language: str
    voice_profile: str


class SegmentPreparer:
    def __init__(
        self, stream_id: str, job_id: str, out_dir: Path, *, registry: StreamRegistry, store: LocalSegmentStore,
        settings: Settings, plan: StreamPlan, dispatch: Callable[[ChainMsg], None],
        start_publisher: Callable[[], None], reader_alive: Callable[[], bool],
        clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.stream_id, self.job_id, self.out_dir = stream_id, job_id, out_dir
        self.registry, self.store, self.settings, self.plan = registry, store, settings, plan
        self.dispatch, self.start_publisher, self.reader_alive = dispatch, start_publisher, reader_alive
        self.clock, self.sleep = clock, sleep
        self.origin_at: float | None = None
        self.offset_s = 0.0
        self.delay_s = output_delay_s(plan.segment_seconds, settings.latency_budget_s)

    def __call__(self, seg: Segment) -> None:
        completed_at = self.clock()
        seg_path = self.store.path(seg.file)
        local = parse_video_span(run_media(video_span_args(self.settings.ffprobe_bin, seg_path), 30))
        if local is None:
            raise NoVideo("input has no video track livedub can read: it dubs H.264 video streams "
                          "(H.265 over enhanced RTMP does not pass nginx-rtmp)")
        now = self.clock()
        if self.origin_at is None:
            self._place(now, local)
        assert self.origin_at is not None
        # Audio boundaries in this reader's own clock (its audio track); times on the stream's timeline.
        b0, b1 = audio_boundary(to_us(local[0])), audio_boundary(to_us(local[1]))
        span = (local[0] + self.offset_s, local[1] + self.offset_s)
        orig_path = self.out_dir / f"orig_{seg.sequence:05d}.pcm"
        self._write_original_audio(b0, b1, orig_path)
        deadline = piece_deadline(self.origin_at, span[0], self.delay_s, self.settings.publish_margin_s)
        extract_s = self.clock() - completed_at
        self.registry.update_segment(self.stream_id, seg.sequence, start_s=span[0], end_s=span[1],
                                     audio_start_sample=b0, audio_samples=b1 - b0, deadline_at=deadline,
                                     completed_at=completed_at, timings_ms={"extract": extract_s * 1000})
        metrics.observe(self.registry.r, "livedub_stage_duration_seconds", extract_s, stage="extract")
        msg = ChainMsg(
            stream_id=self.stream_id, job_id=self.job_id, sequence=seg.sequence, segment_key=seg.file,
            orig_key=self.store.key_of(orig_path), start_s=span[0], end_s=span[1], audio_start_sample=b0,
            audio_samples=b1 - b0, deadline_at=deadline, source_language=self.plan.source_language,
            target_language=self.plan.target_language, voice_profile=self.plan.voice_profile,
            ts_offset_s=self.offset_s,
        )
        self.dispatch(msg)
        fallback = self.out_dir / f"fallback_{seg.sequence:05d}.ts"
        run_media(piece_args(self.settings.ffmpeg_bin, seg_path, orig_path, b0, fallback, self.settings.audio_bitrate,
                             self.offset_s))
        self.registry.update_segment(self.stream_id, seg.sequence, fallback_piece=self.store.key_of(fallback))

    def _place(self, now: float, local: tuple[float, float]) -> None:
        """Put this reader's clock on the stream's timeline, once, at its first segment."""
        key = self.registry.key(self.stream_id)
        origin, delay = self.registry.r.hmget(key, "origin_at", "output_delay_s")
        if origin is None:
            # The stream's first segment just completed: its end is "now" on the input's clock.
            # Keyframes further apart than configured make longer segments: the delay covers them.
            self.origin_at = now - local[1]
            self.delay_s = output_delay_s(max(self.plan.segment_seconds, local[1] - local[0]),
                                          self.settings.latency_budget_s)
            self.registry.set_fields(self.stream_id, origin_at=self.origin_at, output_delay_s=self.delay_s)
            self.start_publisher()
            return
        # A resumed reader (the last ingest worker died): its clock restarted at 0. Media time follows
        # the wall clock, so the output keeps its delay, with a gap for what was lost, never overlapping.
        self.origin_at, self.delay_s = float(origin), float(delay or self.delay_s)
        last_end = max((s.end_s for s in self.registry.segments(self.stream_id) if s.deadline_at), default=0.0)
        self.offset_s = max(now - self.origin_at - local[1], last_end - local[0])

    def _write_original_audio(self, b0: int, b1: int, dest: Path, wait_s: float = 1.5) -> None:
        """Samples [b0, b1) of the continuous audio track into ``dest``, waiting (bounded) for the reader
        to write them; silence where the track has none. Copied in small chunks: many stream threads
        allocating megabyte buffers each segment make the worker's memory grow in steps."""
        track = self.out_dir / AUDIO_TRACK
        deadline = self.clock() + wait_s
        while (track.stat().st_size if track.exists() else 0) < b1 * FRAME_BYTES and self.reader_alive():
            if self.clock() > deadline:
                log.warning("%s: audio track short of sample %d; padding with silence", self.stream_id, b1)
                break
            self.sleep(0.02)
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
