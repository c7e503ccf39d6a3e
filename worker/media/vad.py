"""Voice activity on the continuous audio track: Silero VAD (the ONNX model faster-whisper ships), one
speech probability and one energy per 32 ms frame, fed incrementally as the reader writes the track.

The model file is found without importing faster-whisper (which would load CTranslate2 into the ingest
worker); it runs on onnxruntime, one thread.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from worker.core.timing import AUDIO_RATE, FRAME_BYTES

VAD_RATE = 16000
FRAME = 512  # samples at 16 kHz: 32 ms
CONTEXT = 64
DECIMATE = AUDIO_RATE // VAD_RATE
CHUNK_BYTES = FRAME * DECIMATE * FRAME_BYTES  # one detector frame of the 48 kHz stereo track


class SpeechUnavailable(RuntimeError):
    """The detector's model or runtime is not installed (the ``offline`` extra)."""


def model_path() -> Path:
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise SpeechUnavailable("speech segmentation needs faster-whisper's Silero VAD model: install "
                                "livedub[offline] (the image has it), or use segmentation=fixed")
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "silero_vad_v6.onnx"
    if not path.exists():
        raise SpeechUnavailable(f"no Silero VAD model at {path}")
    return path


def to_vad_audio(pcm: bytes) -> np.ndarray:
    """48 kHz stereo s16le -> 16 kHz mono float32 (channels averaged, 3 samples averaged). Pure."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32).reshape(-1, 2).mean(axis=1) / 32768.0
    n = len(x) // DECIMATE * DECIMATE
    return x[:n].reshape(-1, DECIMATE).mean(axis=1)


def frame_energies(audio16: np.ndarray) -> list[float]:
    """RMS of each 512-sample frame. Pure."""
    frames = audio16[: len(audio16) // FRAME * FRAME].reshape(-1, FRAME)
    return [float(v) for v in np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))]


class SpeechDetector:
    """Frame probabilities for audio as it comes; keeps the 64 samples of context across calls."""

    def __init__(self, session: Any | None = None) -> None:
        if session is None:
            try:
                import onnxruntime
            except ImportError as exc:
                raise SpeechUnavailable("speech segmentation needs onnxruntime (livedub[offline])") from exc
            opts = onnxruntime.SessionOptions()
            opts.inter_op_num_threads = opts.intra_op_num_threads = 1
            opts.log_severity_level = 4
            session = onnxruntime.InferenceSession(str(model_path()), providers=["CPUExecutionProvider"],
                                                   sess_options=opts)
        self.session = session
        self.context = np.zeros(CONTEXT, dtype=np.float32)

    def frames(self, pcm: bytes) -> tuple[list[float], list[float]]:
        """Whole frames of 48 kHz stereo PCM (a multiple of CHUNK_BYTES): (probabilities, energies)."""
        audio = to_vad_audio(pcm)
        n = len(audio) // FRAME
        if n == 0:
            return [], []
        audio = audio[: n * FRAME]
        rows = audio.reshape(n, FRAME)
        contexts = np.concatenate([self.context[None, :], rows[:-1, -CONTEXT:]], axis=0)
        batch = np.concatenate([contexts, rows], axis=1).astype(np.float32)
        h = np.zeros((1, 1, 128), dtype=np.float32)
        c = np.zeros((1, 1, 128), dtype=np.float32)
        out, _, _ = self.session.run(None, {"input": batch, "h": h, "c": c})
        self.context = rows[-1, -CONTEXT:].copy()
        return [float(p) for p in np.asarray(out).reshape(-1)], frame_energies(audio)
