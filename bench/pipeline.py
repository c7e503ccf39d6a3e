"""Benchmark: the live pipeline on one stream, against a naive baseline measured in the same run.

Distributed: `livedub up --engine echo` (Celery pools, Redis, nginx-rtmp), a 36 s speech stream
published in real time with `livedub dub`. Per segment: extract, STS round trip, collect, remux, and
the overhead from "segment complete" to "piece ready" without STS compute; glass-to-glass delay.

Baseline: the same steps (probe + slice, STS over Socket.IO, collect, remux) run one segment after
another in this process, without Celery, on segments cut from the same file. The difference is what
the distributed pipeline costs.

    python -m bench.pipeline [--seconds 36]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import ffmpeg
import redis

from worker.cli.dub import DubReport, run_dub
from worker.core.messages import SegmentWork
from worker.core.segments import Segment
from worker.core.settings import load_settings
from worker.core.stats import percentile
from worker.core.timing import plan_segment
from worker.devstack.samples import make_video
from worker.devstack.stack import LocalStack, StackConfig
from worker.media.commands import AUDIO_TRACK, SEGMENT_PATTERN, audio_track_output
from worker.media.run import run_media
from worker.pipeline.collect import fit_and_mix
from worker.pipeline.prepare import copy_samples, probe_video_span
from worker.pipeline.remux import remux_piece
from worker.pipeline.sts_dispatch import StsPool, dub_segment
from worker.state.registry import StreamRegistry
from worker.state.store import LocalSegmentStore


def stats(values: list[float]) -> str:
    v = sorted(values)
    return f"{percentile(v, 50):8.0f} {percentile(v, 95):8.0f} {len(v):4d}"


def distributed(stack: LocalStack, video: Path, tmp: Path) -> tuple[dict[str, list[float]], DubReport]:
    state = stack.state()
    rep = run_dub(video, tmp / "out.mp4", state, stream_id="bench")
    reg = StreamRegistry(redis.Redis.from_url(stack.redis_url))
    rows: dict[str, list[float]] = {k: [] for k in ("extract", "sts_rtt", "collect", "remux", "overhead")}
    for seg in reg.segments("bench"):
        t = seg.timings_ms
        for k in ("extract", "sts_rtt", "collect", "remux"):
            if k in t:
                rows[k].append(t[k])
        if seg.ready_at and seg.completed_at:
            rows["overhead"].append((seg.ready_at - seg.completed_at) * 1000 - t.get("sts_compute", 0))
    return rows, rep


def naive(stack: LocalStack, video: Path, tmp: Path) -> dict[str, list[float]]:
    """The same steps, called one segment after another in one process, no Celery: the pipeline's own
    functions (probe, plan, audio slice, STS round trip, collect, remux), not a copy of them."""
    out = tmp / "naive"
    store = LocalSegmentStore(out / "store")
    job_dir = store.work_dir("naive", "j0")
    src = ffmpeg.input(str(video))  # the file cut as the reader cuts the live input, with its audio track
    segments = ffmpeg.output(src["v"], src["a"], str(job_dir / SEGMENT_PATTERN), c="copy", f="segment",
                             segment_time=6, segment_format="mpegts", reset_timestamps=0, muxdelay=0, muxpreload=0)
    run_media(ffmpeg.merge_outputs(segments, audio_track_output(src, job_dir / AUDIO_TRACK)).overwrite_output()
              .compile(), 120)
    settings = load_settings(redis_url=stack.redis_url, sts_url=stack.sts_url, sts_token=stack.sts_token,
                             hook_insecure=True, store_dir=out / "store")
    reg = StreamRegistry(redis.Redis.from_url(stack.redis_url))
    reg.start("naive", "bench")
    pool = StsPool(settings)
    rows: dict[str, list[float]] = {k: [] for k in ("extract", "sts_rtt", "collect", "remux", "overhead")}
    for i, seg_path in enumerate(sorted(job_dir.glob("seg_*.ts"))):
        t0 = time.perf_counter()
        local = probe_video_span(seg_path)
        plan = plan_segment(local, 0.0, time.time() - local[0], 60.0, 0.0)
        orig = job_dir / f"orig_{i:05d}.pcm"
        copy_samples(job_dir / AUDIO_TRACK, plan.b0, plan.b1, orig)
        reg.add_segment("naive", Segment(sequence=i, start_s=plan.start_s, end_s=plan.end_s,
                                         file=store.key_of(seg_path)), 0)
        extract = (time.perf_counter() - t0) * 1000
        work = SegmentWork(stream_id="naive", job_id="j0", sequence=i, segment_key=store.key_of(seg_path),
                           orig_key=store.key_of(orig), start_s=plan.start_s, end_s=plan.end_s,
                           audio_start_sample=plan.b0, audio_samples=plan.samples, deadline_at=plan.deadline_at,
                           source_language="en", target_language="es", voice_profile="default")
        t1 = time.perf_counter()
        dubbed = dub_segment(work, store, reg, pool)
        t2 = time.perf_counter()
        fitted = fit_and_mix(dubbed, store, reg, settings)
        t3 = time.perf_counter()
        piece = remux_piece(fitted, store, reg, settings)
        t4 = time.perf_counter()
        assert piece.fallback is None, piece.fallback
        rows["extract"].append(extract)
        rows["sts_rtt"].append((t2 - t1) * 1000)
        rows["collect"].append((t3 - t2) * 1000)
        rows["remux"].append((t4 - t3) * 1000)
        rows["overhead"].append((t4 - t0) * 1000 - piece.timings_ms.get("sts_compute", 0))
    pool.drop("naive")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=36)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        video = make_video(tmp / "speech.flv", args.seconds, speech=True)
        stack = LocalStack(StackConfig(run_dir=tmp / "run", rtmp_port=0, api_port=0, http_port=0, redis_port=0,
                                       flower_port=0, sts_port=0, engine="echo"))
        stack.start()
        try:
            dist, rep = distributed(stack, video, tmp)
            base = naive(stack, video, tmp)
        finally:
            stack.stop()
    seg_s = 6.0
    print(f"one stream, {args.seconds}s of speech, 6 s segments, echo STS, {os.cpu_count()} cores")
    print(f"{'stage (ms)':<40} {'p50':>8} {'p95':>8} {'n':>4}   | naive baseline  p50      p95    n")
    names = {"extract": "extract (probe + audio slice)", "sts_rtt": "STS-dispatch round trip",
             "collect": "collect (fit + mix)", "remux": "remux (piece)",
             "overhead": "segment complete -> piece ready, no STS"}
    for key, label in names.items():
        print(f"{label:<40} {stats(dist[key])}   | {stats(base[key])}")
    lat = rep.latency_s
    print(f"glass-to-glass (s): p50 {lat.p50:.2f}  p95 {lat.p95:.2f}  (target <= segment + 1.0 = {seg_s + 1:.1f};"
          f" configured delay = segment + LIVEDUB_LATENCY_BUDGET_S)")
    print(f"segments: {rep.segments}  output: {rep.output}")
    overhead_p95 = percentile(sorted(dist["overhead"]), 95)
    print(f"overhead p95 {overhead_p95:.0f} ms (target <= 300 ms); distributed minus naive p50: "
          f"{percentile(sorted(dist['overhead']), 50) - percentile(sorted(base['overhead']), 50):.0f} ms")


if __name__ == "__main__":
    main()
