"""Benchmark: the STS service on this machine.

Offline engine, 6 s English fragments as the pipeline sends them (48 kHz stereo PCM): ASR, MT and TTS
ms p50/p95 and the real-time factor. Baseline in the same run: the same engine called in-process,
without Socket.IO. Echo engine: fragments per second over one connection, binary vs base64 audio.
Memory: resident set of each service process.

    python -m bench.sts [--fragments 8]
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from worker.core.stats import percentile
from worker.devstack.children import free_port
from worker.media.procs import ProcessRunner, stop_process, wait_until
from worker.sts.client import StsClient
from worker.sts.engines import OfflineEngine
from worker.sts.protocol import AudioIn, FragmentData, StageTimings, StreamConfig, StreamInit

SENTENCES = [
    "Good morning everyone. Today we will talk about the weather and the news.",
    "The city council met this afternoon to discuss the new park and the library.",
    "I would like a cup of coffee and a piece of bread, please.",
    "Our team won the game last night after a very long and difficult match.",
    "Please remember to close the windows before you leave the house.",
    "The train to the airport leaves every twenty minutes from platform four.",
    "We are going to the market to buy some fruit, vegetables and fresh fish.",
    "The children played in the garden until the sun went down.",
]
TOKEN = "bench-token"


def fragment_pcm(text: str, tmp: Path) -> bytes:
    wav = tmp / "s.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
    six_s = "apad=whole_len=288000,atrim=end_sample=288000"
    out = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), "-af", six_s, "-f", "s16le", "-ar", "48000",
                          "-ac", "2", "pipe:1"], capture_output=True, check=True)
    return out.stdout


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def serve(engine: str) -> tuple[object, str]:
    port = free_port()
    proc = ProcessRunner().start([sys.executable, "-m", "worker.cli", "sts", "--engine", engine, "--port", str(port)],
                                 env={**os.environ, "LIVEDUB_STS_TOKEN": TOKEN}, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(f"{url}/health", timeout=1).json()["models"]["asr"]["state"] == "ready", 90)
    return proc, url


def frag(i: int, pcm: bytes, binary: bool = True) -> FragmentData:
    audio = AudioIn(format="pcm_s16le", sample_rate_hz=48000, channels=2, duration_ms=6000,
                    **({"data": pcm} if binary else {"data_base64": base64.b64encode(pcm).decode()}))
    return FragmentData(fragment_id=f"f{i}", stream_id="b", sequence_number=i, audio=audio)


def row(name: str, values: list[float]) -> str:
    v = sorted(values)
    return f"{name:<34} {percentile(v, 50):8.0f} {percentile(v, 95):8.0f} {len(v):4d}"


def offline(pcms: list[bytes]) -> None:
    proc, url = serve("offline")
    try:
        asr: list[float] = []
        mt: list[float] = []
        tts: list[float] = []
        total: list[float] = []
        with StsClient(url, token=TOKEN) as c:
            c.init_stream(StreamInit(stream_id="b", max_inflight=8))
            for i, pcm in enumerate(pcms):
                c.send_fragment(frag(i, pcm))
                res = c.wait_processed(f"f{i}", 60)
                assert res.status == "success", res.error
                st = res.stage_timings or StageTimings()
                asr.append(st.asr_ms)
                mt.append(st.translation_ms)
                tts.append(st.tts_ms)
                total.append(res.processing_time_ms)
        mem = rss_mb(proc.pid)  # type: ignore[attr-defined]
    finally:
        stop_process(proc)  # type: ignore[arg-type]
    engine = OfflineEngine()
    engine.load()
    base: list[float] = []
    for i, pcm in enumerate(pcms):
        t0 = time.perf_counter()
        engine.process(frag(i, pcm).audio, pcm, StreamConfig())
        base.append((time.perf_counter() - t0) * 1000)
    print(f"{'offline engine, 6 s fragments (ms)':<34} {'p50':>8} {'p95':>8} {'n':>4}")
    for name, vals in (("ASR (faster-whisper tiny.en int8)", asr), ("MT (apertium eng-spa)", mt),
                       ("TTS (espeak-ng)", tts), ("whole fragment, in the service", total),
                       ("baseline: engine in-process", base)):
        print(row(name, vals))
    rtf = percentile(sorted(total), 50) / 6000
    print(f"real-time factor (p50 / 6 s): {rtf:.3f}  (target <= 0.2); p95: {percentile(sorted(total), 95) / 6000:.3f}")
    print(f"offline service RSS after the run: {mem:.0f} MB")


def echo(pcm: bytes, n: int) -> None:
    proc, url = serve("echo")
    try:
        for binary in (True, False):
            with StsClient(url, token=TOKEN) as c:
                c.init_stream(StreamInit(stream_id="b", max_inflight=8))
                t0 = time.perf_counter()
                window = 4
                for i in range(n):
                    c.send_fragment(frag(i, pcm, binary))
                    if i >= window:
                        c.wait_processed(f"f{i - window}", 30)
                for i in range(max(0, n - window), n):
                    c.wait_processed(f"f{i}", 30)
                rate = n / (time.perf_counter() - t0)
            label = "binary" if binary else "base64"
            print(f"echo: {rate:7.1f} fragments/s ({rate * 6:.0f}x real time), 1.15 MB fragments, {label} audio")
        print(f"echo service RSS: {rss_mb(proc.pid):.0f} MB")  # type: ignore[attr-defined]
    finally:
        stop_process(proc)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fragments", type=int, default=8)
    ap.add_argument("--echo-fragments", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pcms = [fragment_pcm(SENTENCES[i % len(SENTENCES)], Path(tmp)) for i in range(args.fragments)]
    print(f"{os.cpu_count()} cores")
    offline(pcms)
    echo(pcms[0], args.echo_fragments)


if __name__ == "__main__":
    main()
