"""Benchmark: speech mode against fixed mode, the same input through the same stack in the same run.

Inputs, made here: a minute of news-style English (13 sentences, espeak-ng, a 0.3 s pause after each, a
keyframe every 2 s as OBS sends), and the LibriVox clips Debian ships in ``pocketsphinx-testdata`` (joined
with 0.4 s pauses). Each goes through ``livedub up --engine offline`` with ``livedub dub``, once with
``segmentation=speech`` and once with ``segmentation=fixed``.

Figures: unit boundaries inside speech (a boundary not in a pause of the clean input), WER of the joined
transcripts against the script (after Whisper's English normalizer, as Whisper's own figures are; and
``wer_plain``, lower case without punctuation only, as this bench reported before), chrF (sacrebleu) of
the joined translations against Apertium on the script's whole sentences, glass-to-glass p50/p95,
fallbacks per minute, the dub's start lag after its unit's start, stretch ratios, the output's A/V
offsets, the pieces' slack before their deadlines (p5) and their seal-to-ready time (p95: the remux's
share of the 0.8 s reserve), the stream's STS and hearing estimates at the end, and the STS service's
Whisper decodes by kind (``wide``: with a beam over 1).

    python -m bench.speech [--latency 6] [--corpus news|librivox|both] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import redis
import requests
import sacrebleu

from bench.support.wer import wer, whisper_normalize
from worker.cli.dub import run_dub
from worker.core.stats import percentile
from worker.devstack.stack import LocalStack, StackConfig
from worker.state.registry import StreamRegistry
from worker.sts.engines import translate

NEWS = [
    "The city council met this afternoon to discuss the new budget for next year.",
    "Members argued for three hours about the roads and the old bridges.",
    "In the end they agreed to raise local taxes by two percent.",
    "The mayor said that most of the money will go to the schools.",
    "Parents welcomed the news at a crowded meeting last night.",
    "Teachers hope to hire twenty new staff before the autumn term.",
    "The plan also pays for a new library in the north of the city.",
    "Work on the building should begin early in the spring.",
    "Some shop owners worry that higher taxes will keep customers away.",
    "The council will vote on the final plan at the end of the month.",
    "Meanwhile the weather will stay cold for the rest of the week.",
    "Snow is expected on the hills on Friday and Saturday.",
    "Drivers are asked to take care on the roads in the early morning.",
]
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
RATE = 48000


def asr_decodes(sts_url: str) -> dict[str, int]:
    """The STS service's Whisper decodes so far, by kind (windowed, timestamped, full, silent)."""
    decodes: dict[str, int] = requests.get(f"{sts_url}/health", timeout=10).json()["models"]["asr"]["decodes"]
    return decodes


def sox(*args: str) -> None:
    subprocess.run(["sox", "-V1", "-R", *args], check=True, timeout=120)


def news_audio(tmp: Path) -> tuple[Path, list[str]]:
    parts = []
    for i, sentence in enumerate(NEWS):
        raw, part = tmp / f"n{i}.raw.wav", tmp / f"n{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), sentence], check=True, timeout=60)
        sox(str(raw), "-r", str(RATE), "-c", "1", str(part), "silence", "1", "0.01", "0.1%", "reverse", "silence", "1",
            "0.01", "0.1%", "reverse", "pad", "0", "0.3")
        parts.append(str(part))
    out = tmp / "news.wav"
    sox(*parts, str(out), "pad", "0.5", "1.5")
    return out, NEWS


def librivox_script() -> list[str] | None:
    """The LibriVox clips' sentences, in the clips' order; None (and why) without pocketsphinx-testdata."""
    script = LIBRIVOX / "transcription"
    if not script.exists():
        print("no LibriVox clips: apt-get install pocketsphinx-testdata")
        return None
    return [line.split("</s>")[0].replace("<s>", "").strip() + "." for line in script.read_text().splitlines() if line]


def librivox_audio(tmp: Path) -> tuple[Path, list[str]] | None:
    lines = librivox_script()
    if lines is None:
        return None
    parts = []
    for i, wav in enumerate(sorted(LIBRIVOX.glob("*.wav"))):
        part = tmp / f"l{i}.wav"
        sox(str(wav), "-r", str(RATE), "-c", "1", str(part), "pad", "0", "0.4")
        parts.append(str(part))
    out = tmp / "librivox.wav"
    sox(*parts, str(out), "pad", "0.5", "1.5")
    return out, lines


def corpus_inputs(tmp: Path, corpus: str) -> list[tuple[str, Path, list[str]]]:
    """The inputs ``corpus`` (news, librivox or both) names, made in ``tmp``: (name, wav, script)."""
    inputs = []
    if corpus in ("news", "both"):
        inputs.append(("news", *news_audio(tmp)))
    if corpus in ("librivox", "both") and (lv := librivox_audio(tmp)) is not None:
        inputs.append(("librivox", *lv))
    return inputs


def to_video(wav: Path, out: Path) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-i", str(wav),
                    "-shortest", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-keyint_min", "50",
                    "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-ac", "2",
                    str(out)], check=True, timeout=120)
    return out


def pauses(wav: Path, min_s: float = 0.1) -> list[tuple[float, float]]:
    """Pauses of the clean input: 10 ms frames 40 dB under its loudest, at least ``min_s`` long."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-ac", "1", "-ar", "16000", "-f", "s16le", "-"],
                         capture_output=True, check=True, timeout=60).stdout
    x = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    level = np.convolve(np.sqrt((frames ** 2).mean(axis=1)), np.ones(5) / 5, mode="same")  # 50 ms smoothing
    # 40 dB under the loudest, or (a recording with a noise floor) under 0.3 of its median level
    quiet = level < max(level.max() * 0.01, 0.3 * float(np.median(level[level > 0])))
    out, start = [], None
    for i, q in enumerate([*quiet, False]):
        if q and start is None:
            start = i
        elif not q and start is not None:
            if (i - start) * 0.01 >= min_s:
                out.append((start * 0.01, i * 0.01))
            start = None
    return out


def inside_speech(t: float, gaps: list[tuple[float, float]], tol: float = 0.1) -> bool:
    return not any(a - tol <= t <= b + tol for a, b in gaps)


def p(values: list[float], q: int) -> float | None:
    return round(percentile(sorted(values), q), 3) if values else None


def figures(reg: StreamRegistry, sid: str, rep: Any, script: list[str], reference: str,
            gaps: list[tuple[float, float]], minutes: float) -> dict[str, Any]:
    rec = reg.get(sid)
    assert rec is not None
    out = rep.output.model_dump() if rep.output is not None else {}
    if rec.units:
        items: list[Any] = rec.units
        bounds = [u.end_s for u in rec.units[:-1]]
    else:
        items = rec.segments
        bounds = [s.start_s for s in rec.segments[1:]]
    transcripts = " ".join(i.transcript or "" for i in items)
    translations = " ".join(i.translated_text or "" for i in items)
    fallbacks = [i for i in items if i.status.value != "processed"]
    lags = [u.lag_s for u in rec.units if u.lag_s is not None]
    stretch = [i.stretch_ratio for i in items if i.stretch_ratio is not None]
    for u in rec.units:  # closed: after its end on the input's clock (a pause, or the wait for its maximum)
        trip, closed = u.round_trip_s(0.0), (u.closed_at or 0) - (rec.origin_at or 0) - u.end_s
        print(f"  unit {u.sequence:3d} {u.start_s:7.2f}-{u.end_s:7.2f} ({u.end_s - u.start_s:4.2f}s) {u.cut.value:5s} "
              f"{u.status.value:9s} lag {u.lag_s} x{u.stretch_ratio} rtt {u.timings_ms.get('sts_rtt', 0):.0f}ms "
              f"closed {closed:+.2f}s close-to-placed {'-' if trip is None else f'{trip:.2f}s'} "
              f"{u.reason or ''} | {u.transcript} | {u.translated_text}")
    return {
        "units": len(items), "boundaries": len(bounds),
        "boundaries_inside_speech": round(sum(inside_speech(b, gaps) for b in bounds) / max(len(bounds), 1), 3),
        "wer": round(wer(" ".join(script), transcripts, whisper_normalize), 3),
        "wer_plain": round(wer(" ".join(script), transcripts), 3),
        "chrf": round(sacrebleu.corpus_chrf([translations], [[reference]]).score / 100, 3),
        "glass_to_glass_p50_s": rep.latency_s.p50, "glass_to_glass_p95_s": rep.latency_s.p95,
        "fallbacks_per_minute": round(len(fallbacks) / minutes, 2),
        "fallback_reasons": sorted({i.reason_code.value for i in fallbacks if i.reason_code}),
        "lag_p50_s": p(lags, 50), "lag_p95_s": p(lags, 95),
        "stretch_p50": p(stretch, 50), "stretch_max": max(stretch) if stretch else None,
        "av_offset_start_ms": out.get("av_offset_start_ms"), "av_offset_end_ms": out.get("av_offset_end_ms"),
        "piece_slack_p5_s": p([s.deadline_at - s.ready_at for s in rec.segments if s.ready_at and s.deadline_at], 5),
        "seal_to_ready_p95_s": p([s.ready_at - s.sealed_at for s in rec.segments
                                  if s.ready_at and s.sealed_at and s.piece != s.fallback_piece], 95),
        "sts_estimate_s": rec.sts_estimate_s, "hear_estimate_s": rec.hear_estimate_s,
        "pieces": rep.segments.model_dump(), "output_duration_s": out.get("duration_s"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=6.0, help="speech mode's latency_s")
    ap.add_argument("--corpus", choices=("news", "librivox", "both"), default="both")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        inputs = corpus_inputs(tmp, args.corpus)
        stack = LocalStack(StackConfig(run_dir=tmp / "run", rtmp_port=0, api_port=0, http_port=0, redis_port=0,
                                       flower_port=0, sts_port=0, engine="offline"))
        stack.start()
        try:
            reg = StreamRegistry(redis.Redis.from_url(stack.redis_url))
            state = stack.state()  # read once: the stack's addresses do not change while it runs
            for name, wav, script in inputs:
                video = to_video(wav, tmp / f"{name}.flv")
                gaps, minutes = pauses(wav), float(subprocess.run(
                    ["soxi", "-D", str(wav)], capture_output=True, text=True, check=True).stdout) / 60
                reference = " ".join(translate(s, "en", "es") for s in script)
                for mode, more in (("speech", {"segmentation": "speech", "latency_s": args.latency}),
                                   ("fixed", {"segmentation": "fixed"})):
                    sid = f"bench-{name}-{mode}"
                    before = asr_decodes(state["sts_url"])
                    rep = run_dub(video, tmp / f"{sid}.mp4", state, stream_id=sid, more=more)
                    results[f"{name}/{mode}"] = figures(reg, sid, rep, script, reference, gaps, minutes)
                    after = asr_decodes(state["sts_url"])
                    results[f"{name}/{mode}"]["decodes"] = {k: after[k] - before.get(k, 0) for k in after}
                    print(f"{name}/{mode}: {json.dumps(results[f'{name}/{mode}'])}", flush=True)
        finally:
            stack.stop()
    keys = [k for k in next(iter(results.values())) if k not in ("pieces", "fallback_reasons", "decodes")]
    print(f"\n{'figure':<28}" + "".join(f"{k:>20}" for k in results))
    for key in keys:
        print(f"{key:<28}" + "".join(f"{str(r[key]):>20}" for r in results.values()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
