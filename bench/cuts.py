"""Benchmark: units cut inside speech, decoded as cut against decoded with the speech after each cut.

The same cuts for both, in the same run: the news script (bench.speech's sentences, espeak-ng) and the
LibriVox clips, run through the speech tracker's detector (Silero) and cutter offline with a fixed
maximum unit length (``--max``, 2.5 s by default: about what a loaded host or a 5 s delay allows), so
that many units are cut inside speech. Each unit is then dubbed's first two stages the way the offline
engine runs them (Whisper with the units before as the prompt, Apertium with the sentence's beginning):

- ``as cut``: the unit's audio exactly as cut, as livedub sends it to a server without ``speech_bounds``;
- ``bounds``: a unit cut inside speech with up to ``LIVEDUB_SPEECH_LOOKAHEAD_S`` (0.5 s) of the speech after
  its cut, as far as the detector had heard when it closed, keeping its own words; the unit after it
  skipping what the unit before's last word took (worker/sts/bounds.py).

Figures: WER of the joined transcripts against the script, chrF of the joined translations against the
same MT on the script's whole sentences, and the units' ASR time (p50), for each.

    python -m bench.cuts [--max 2.5] [--corpus news|librivox|both]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sacrebleu

from bench.speech import corpus_inputs
from bench.support.wer import wer, whisper_normalize
from worker.core.speech import CutKind, CutParams, UnitCutter
from worker.core.stats import percentile
from worker.media.vad import CHUNK_BYTES, SpeechDetector
from worker.sts.bounds import Bounds, skip_after
from worker.sts.context import SpeechContext
from worker.sts.engines import OfflineEngine, translate, translate_in_context

RATE, VAD_RATE = 48000, 16000


@dataclass(frozen=True)
class Cut:
    start_s: float
    end_s: float
    heard_s: float  # what the detector had heard when the unit closed
    quiet: bool


def track(wav: Path) -> bytes:
    """The pipeline's track: 48 kHz stereo s16le."""
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-f", "s16le", "-ac", "2", "-ar", str(RATE), "-"],
                          capture_output=True, check=True, timeout=120).stdout


def cuts(pcm: bytes, max_s: float) -> list[Cut]:
    """Where the tracker's cutter closes units on ``pcm``, one detector frame at a time."""
    detector, cutter = SpeechDetector(), UnitCutter(CutParams(max_unit_s=max_s))
    frame = cutter.params.frame_s
    out = []
    for i in range(0, len(pcm) - CHUNK_BYTES + 1, CHUNK_BYTES):
        probs, energies = detector.frames(pcm[i: i + CHUNK_BYTES])
        for c in cutter.feed(probs, energies):
            out.append(Cut(c.start * frame, c.end * frame, cutter.frame * frame, c.kind is CutKind.QUIET))
    if (last := cutter.flush()) is not None:
        out.append(Cut(last.start * frame, last.end * frame, cutter.frame * frame, False))
    return out


def mono16(pcm: bytes, a_s: float, b_s: float) -> np.ndarray:
    x = np.frombuffer(pcm, dtype="<i2")[round(a_s * RATE) * 2: round(b_s * RATE) * 2]
    return x.astype(np.float32).reshape(-1, 2).mean(axis=1)[::3] / 32768.0


def dub_texts(engine: Any, pcm: bytes, units: list[Cut], look_s: float) -> tuple[list[str], list[str], list[float]]:
    """Each unit's transcript and translation, in order, with ``look_s`` of the speech after a cut inside
    speech (0: as cut); and each unit's ASR time."""
    texts: list[str] = []
    translations: list[str] = []
    times: list[float] = []
    before: Cut | None = None
    spoken: float | None = None
    for u in units:
        goes = before is not None and before.quiet and abs(u.start_s - before.end_s) < 1e-6
        look = min(look_s, u.heard_s - u.end_s) if u.quiet and look_s > 0 else 0.0
        skip = skip_after(spoken, u.start_s) if goes and look_s > 0 else 0.0
        ctx = SpeechContext(texts[-1] if texts else "", goes, Bounds(u.end_s - u.start_s if look > 0 else None, skip))
        t0 = time.perf_counter()
        text, until = engine.asr.hear(mono16(pcm, u.start_s, u.end_s + look), "en", ctx.prompt, 5, ctx.bounds)
        times.append(time.perf_counter() - t0)
        translations.append(translate_in_context(text, ctx.sentence_start, "en", "es", engine.translator.run)
                            if text else "")
        texts.append(text)
        before, spoken = u, (None if until is None else u.start_s + until)
    return texts, translations, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max", type=float, default=2.5, help="the longest unit, s")
    ap.add_argument("--corpus", choices=("news", "librivox", "both"), default="both")
    ap.add_argument("--lookahead", type=float, default=0.5)
    args = ap.parse_args()
    engine = OfflineEngine(device="cpu", compute_type="int8", cpu_threads=2, beam_size=5)
    engine.load()
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp_s:
        for name, wav, script in corpus_inputs(Path(tmp_s), args.corpus):
            pcm = track(wav)
            units = cuts(pcm, args.max)
            reference = " ".join(translate(s, "en", "es") for s in script)
            for mode, look in (("as cut", 0.0), ("bounds", args.lookahead)):
                texts, translations, times = dub_texts(engine, pcm, units, look)
                key = f"{name}/{mode}"
                rows[key] = {
                    "units": len(units), "cut_inside_speech": sum(u.quiet for u in units),
                    "wer": round(wer(" ".join(script), " ".join(texts), whisper_normalize), 3),
                    "chrf": round(sacrebleu.corpus_chrf([" ".join(translations)], [[reference]]).score / 100, 3),
                    "asr_ms_p50": round(percentile(sorted(times), 50) * 1000),
                }
                print(f"{key}: {json.dumps(rows[key])}", flush=True)
                for u, text in zip(units, texts, strict=True):
                    if u.quiet or mode == "bounds":
                        print(f"  {u.start_s:6.2f}-{u.end_s:6.2f} {'quiet' if u.quiet else 'pause'} | {text}")
    print(f"\n{'figure':<20}" + "".join(f"{k:>18}" for k in rows))
    for fig in next(iter(rows.values())):
        print(f"{fig:<20}" + "".join(f"{str(r[fig]):>18}" for r in rows.values()))


if __name__ == "__main__":
    main()
