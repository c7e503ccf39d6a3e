"""Benchmark: the STS service's ASR stage on each device (CPU, CUDA).

The offline engine's Whisper (tiny.en through faster-whisper, the engine's own load and decode path:
``OfflineEngine(device=..., compute_type=..., beam_size=...)``, ``UnitAsr.transcribe`` with the units
before as the prompt, as the service runs them) on units as speech mode sends them: the news script
spoken by espeak-ng, one unit a sentence, and the LibriVox clips Debian ships. Each configuration
decodes every unit once after a warm-up: ms a unit p50/p95, the real-time factor and WER against the
script; then the same units from ``--threads`` engine threads at once (the service's ``--workers``), as
units a second. The baseline in the same run is the CPU, int8, on 2 threads, as on this project's CI
machine. Apertium and espeak-ng (MT, TTS) run on the CPU whatever the device: bench.sts measures them.

    python -m bench.asr make units.npz      # here: espeak-ng, sox, pocketsphinx-testdata
    python -m bench.asr run units.npz --config cpu/int8/2/1 --config cuda/float16/0/5
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.support.wer import wer
from worker.core.stats import percentile
from worker.sts.context import PROMPT_CHARS

RATE = 16000


@dataclass(frozen=True)
class Config:
    device: str
    compute_type: str
    threads: int  # CPU threads (0: the engine's default)
    beam: int

    @classmethod
    def parse(cls, text: str) -> Config:
        device, compute, threads, beam = text.split("/")
        return cls(device, compute, int(threads), int(beam))

    def __str__(self) -> str:
        return f"{self.device}/{self.compute_type}/{self.threads or 'all'}t/beam{self.beam}"


def pcm16k(wav: Path) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-ac", "1", "-ar", str(RATE), "-f", "s16le", "-"],
                         capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, dtype="<i2")


def make(out: Path) -> None:
    from bench.speech import LIBRIVOX, NEWS, librivox_script

    units: dict[str, np.ndarray] = {}
    refs: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory() as d:
        for i, sentence in enumerate(NEWS):
            wav = Path(d) / f"n{i}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), sentence], check=True, timeout=60)
            units[f"u{len(refs)}"] = pcm16k(wav)
            refs.append({"corpus": "news", "text": sentence})
    lines = librivox_script() or []
    for wav, line in zip(sorted(LIBRIVOX.glob("*.wav")) if lines else [], lines, strict=True):
        units[f"u{len(refs)}"] = pcm16k(wav)
        refs.append({"corpus": "librivox", "text": line})
    units["refs"] = np.array(json.dumps(refs))
    np.savez_compressed(out, allow_pickle=False, **units)
    seconds = sum(u.size for k, u in units.items() if k != "refs") / RATE
    print(f"{len(refs)} units, {seconds:.1f} s of speech -> {out}")


def load_units(path: Path) -> tuple[list[np.ndarray], list[dict[str, str]]]:
    data = np.load(path)
    refs = json.loads(str(data["refs"]))
    return [data[f"u{i}"].astype(np.float32) / 32768 for i in range(len(refs))], refs


def engine_for(cfg: Config, model_dir: str | None = None) -> Any:
    from worker.sts.engines import OfflineEngine

    engine = OfflineEngine(model_dir=model_dir, device=cfg.device, compute_type=cfg.compute_type,
                           cpu_threads=cfg.threads or None, beam_size=cfg.beam)
    engine.load()
    return engine


def decode_all(transcribe: Callable[[np.ndarray, str | None], str], units: list[np.ndarray],
               refs: list[dict[str, str]]) -> tuple[list[float], list[str]]:
    """Each unit decoded in turn with the transcript of the units before it (same corpus) as the prompt."""
    ms: list[float] = []
    texts: list[str] = []
    for pcm, ref in zip(units, refs, strict=True):
        before = " ".join(t for t, r in zip(texts, refs, strict=False) if r["corpus"] == ref["corpus"])
        t0 = time.perf_counter()
        texts.append(transcribe(pcm, before[-PROMPT_CHARS:].strip() or None))
        ms.append((time.perf_counter() - t0) * 1000)
    return ms, texts


def throughput(transcribe: Callable[[np.ndarray, str | None], str], units: list[np.ndarray], threads: int,
               rounds: int = 2) -> tuple[float, float]:
    """Units a second and p95 ms a unit with ``threads`` decoding at once (no prompt)."""
    work = units * rounds
    lat: list[float] = []
    lock = threading.Lock()

    def one(pcm: np.ndarray) -> None:
        t0 = time.perf_counter()
        transcribe(pcm, None)
        with lock:
            lat.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, work))
    return len(work) / (time.perf_counter() - t0), percentile(sorted(lat), 95)


def decode(engine: Any, pcm: np.ndarray, prompt: str | None) -> str:
    return str(engine.asr.transcribe(pcm, "en", prompt))


def run(path: Path, configs: list[Config], threads: int, model_dir: str | None = None) -> list[dict[str, Any]]:
    units, refs = load_units(path)
    audio_s = sum(u.size for u in units) / RATE
    rows: list[dict[str, Any]] = []
    print(f"{len(units)} units, {audio_s:.1f} s; ms a unit, real-time factor, WER news/LibriVox, "
          f"units/s with {threads} threads")
    for cfg in configs:
        try:
            engine = engine_for(cfg, model_dir)
            transcribe = functools.partial(decode, engine)
            transcribe(units[0], None)  # warm-up
        except Exception as exc:  # noqa: BLE001 - a device that cannot load or decode is a row, not the end of the run
            print(f"{cfg!s:<34} cannot decode: {type(exc).__name__}: {exc}"[:400], flush=True)
            rows.append({"config": str(cfg), "error": f"{type(exc).__name__}: {exc}"[:400]})
            continue
        ms, texts = decode_all(transcribe, units, refs)
        errors = {c: wer(" ".join(r["text"] for r in refs if r["corpus"] == c),
                         " ".join(t for t, r in zip(texts, refs, strict=True) if r["corpus"] == c))
                  for c in ("news", "librivox")}
        ups, p95 = throughput(transcribe, units, threads)
        s = sorted(ms)
        row = {"config": str(cfg), "p50_ms": percentile(s, 50), "p95_ms": percentile(s, 95),
               "rtf": sum(ms) / 1000 / audio_s, "wer_news": errors["news"], "wer_librivox": errors["librivox"],
               "units_per_s": ups, "threads": threads, "p95_ms_loaded": p95,
               "decodes": dataclasses.asdict(engine.asr.counts)}
        rows.append(row)
        print(f"{cfg!s:<34} p50 {row['p50_ms']:7.0f} p95 {row['p95_ms']:7.0f}  rtf {row['rtf']:.3f}  "
              f"WER {errors['news']:.3f}/{errors['librivox']:.3f}  {ups:6.1f} units/s (p95 {p95:.0f} ms)", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make")
    mk.add_argument("out", type=Path)
    rn = sub.add_parser("run")
    rn.add_argument("units", type=Path)
    rn.add_argument("--config", action="append", type=Config.parse, default=None,
                    help="device/compute_type/cpu_threads/beam; repeatable (default: the CPU baseline)")
    rn.add_argument("--threads", type=int, default=4, help="engine threads for the throughput figure")
    rn.add_argument("--json", type=Path, help="write the rows here too")
    rn.add_argument("--model-dir", help="a CTranslate2 Whisper model directory (default: tiny.en wheel)")
    args = ap.parse_args()
    if args.cmd == "make":
        make(args.out)
        return
    rows = run(args.units, args.config or [Config("cpu", "int8", 2, 1)], args.threads, args.model_dir)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
