"""Sample media made on the spot: espeak-ng speech, ffmpeg testsrc video, sox to pad and trim."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

NUMBERS = ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
           "sixteen seventeen eighteen nineteen twenty").split()


def counting_speech(path: Path, seconds: int, rate: int = 48000) -> Path:
    """English counting, one number per second, as a mono WAV of exactly ``seconds`` seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        parts = []
        for i in range(seconds):
            word = NUMBERS[i % len(NUMBERS)]
            raw, part = Path(tmp) / f"r{i}.wav", Path(tmp) / f"p{i}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "200", "-w", str(raw), word], check=True, timeout=30)
            subprocess.run(["sox", "-V1", str(raw), "-r", str(rate), "-c", "1", str(part),
                            "pad", "0", "1", "trim", "0", "1"], check=True, timeout=30)
            parts.append(str(part))
        subprocess.run(["sox", *parts, str(path)], check=True, timeout=60)
    return path


def spoken_text(path: Path, text: str, seconds: int, rate: int = 48000) -> Path:
    """English sentences (espeak-ng en-us), padded or trimmed to exactly ``seconds``, as a mono WAV."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True,
                   timeout=60 + seconds / 10)
    subprocess.run(["sox", "-V1", str(raw), "-r", str(rate), "-c", "1", str(path), "pad", "0", str(seconds),
                    "trim", "0", str(seconds)], check=True, timeout=60 + seconds / 10)
    raw.unlink()
    return path


def make_video(
    path: Path, seconds: float, gop_s: float = 2.0, audio: bool = True, video: bool = True, rate: int = 25,
    speech: bool = False, text: str | None = None, channels: int = 1,
) -> Path:
    """An H.264/AAC FLV stream: testsrc video, a keyframe every ``gop_s``; a 440 Hz tone, counting
    speech with ``speech=True``, or ``text`` spoken."""
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc=size=320x240:rate={rate}"]
    if audio and (speech or text):
        wav = path.with_suffix(".speech.wav")
        if text:
            spoken_text(wav, text, int(seconds + 0.999))
        else:
            counting_speech(wav, int(seconds + 0.999))
        args += ["-i", str(wav)]
    elif audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    args += ["-t", f"{seconds:g}"]
    if video:
        g = str(int(gop_s * rate))
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-g", g, "-keyint_min", g, "-sc_threshold", "0",
                 "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k", "-ar", "48000", "-ac", str(channels)]
    subprocess.run([*args, str(path)], check=True, timeout=120 + seconds / 5)  # an hour: about 130 s here
    return path
