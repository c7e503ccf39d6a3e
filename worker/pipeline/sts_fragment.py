"""The fragment STS-dispatch sends, in the dialect the STS service speaks (docs/sts-protocol.md).

A server whose ``stream:ready`` advertises livedub's extensions gets the segment's PCM as a binary
attachment; a plain v1.0 server (the seed's) gets it as ``m4a`` (MP4/AAC) in ``data_base64``. Both get
v1.0's types: an int ``timestamp`` in Unix ms and an int ``duration_ms``.
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worker.core.messages import DubRequest
from worker.core.timing import AUDIO_RATE, FRAME_BYTES
from worker.media.commands import m4a_args
from worker.media.run import run_media
from worker.sts.protocol import AudioIn, FragmentData, speaks_extensions

# What the collect stage can read back (everything else falls back with that reason).
DUB_FORMATS = {"wav": "wav", "m4a": "m4a", "pcm_s16le": "pcm", "pcm_f32le": "f32"}


def pcm_to_m4a(pcm: bytes, ffmpeg_bin: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.pcm", Path(tmp) / "out.m4a"
        src.write_bytes(pcm)
        run_media(m4a_args(ffmpeg_bin, src, dst))
        return dst.read_bytes()


def fragment_for(work: DubRequest, fid: str, pcm: bytes, caps: dict[str, Any], chunk_ms: int,
                 ffmpeg_bin: str, clock: Callable[[], float], budget_s: float | None = None) -> FragmentData:
    """``budget_s``: how long livedub will wait for the answer (``metadata.budget_ms``): a server that
    reads it skips a fragment that waited longer in its queue instead of computing a dub nobody takes.
    The audio after a unit (``look_samples``) goes only to a server that decodes a fragment's own words
    (``speech_bounds``); another would say those words twice."""
    bounds = speaks_extensions(caps) and caps.get("speech_bounds") is True
    if work.look_samples:
        if bounds:
            chunk_ms += round(work.look_samples * 1000 / AUDIO_RATE)
        else:
            pcm = pcm[: work.audio_samples * FRAME_BYTES]
    if speaks_extensions(caps):
        audio = AudioIn(format="pcm_s16le", sample_rate_hz=AUDIO_RATE, channels=2, duration_ms=chunk_ms, data=pcm)
    else:
        audio = AudioIn(format="m4a", sample_rate_hz=AUDIO_RATE, channels=2, duration_ms=chunk_ms,
                        data_base64=base64.b64encode(pcm_to_m4a(pcm, ffmpeg_bin)).decode())
    return FragmentData(fragment_id=fid, stream_id=work.stream_id, sequence_number=work.sequence,
                        timestamp=int(clock() * 1000), audio=audio,
                        metadata={**work.fragment_metadata(bounds),
                                  **({"budget_ms": int(budget_s * 1000)} if budget_s is not None else {})})
