"""The chain's media stages as plain functions, with real ffmpeg, real files and a real Redis."""

import subprocess
import wave

import pytest
import redis

from worker.chain import collect, remux
from worker.models import ChainMsg, Segment
from worker.registry import StreamRegistry
from worker.settings import load_settings
from worker.store import LocalSegmentStore
from worker.timing import AUDIO_RATE

pytestmark = pytest.mark.integration
SLOT = 1024 * 141  # about 3 s at 48 kHz


@pytest.fixture
def env(tmp_path, redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    reg = StreamRegistry(client)
    store = LocalSegmentStore(tmp_path / "store")
    job_dir = store.job_dir("s", "j1")
    reg.start("s", "test")
    reg.add_segment("s", Segment(sequence=0, start_s=0, end_s=3, file="s/j1/seg.ts"), 1)
    (job_dir / "orig_00000.pcm").write_bytes(b"\x10\x00" * 2 * SLOT)
    settings = load_settings(redis_url=redis_url, hook_insecure=True, max_stretch=1.3)
    return reg, store, job_dir, settings


def speech(path, text, rate_wpm=175):
    subprocess.run(["espeak-ng", "-v", "es", "-s", str(rate_wpm), "-w", str(path), text], check=True, timeout=30)
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def msg(store, job_dir, dub, **kw):
    base = dict(stream_id="s", job_id="j1", sequence=0, segment_key="s/j1/seg.ts",
                orig_key=store.key_of(job_dir / "orig_00000.pcm"), start_s=0, end_s=3, audio_start_sample=0,
                audio_samples=SLOT, deadline_at=1e12, source_language="en", target_language="es",
                voice_profile="default", dub_key=store.key_of(dub) if dub else None, dub_format="wav",
                dub_rate=22050, dub_channels=1)
    base.update(kw)
    return ChainMsg(**base)


def test_a_dub_much_longer_than_its_slot_is_stretched_to_the_max_then_trimmed(env):
    reg, store, job_dir, settings = env
    long_dub = job_dir / "dub_00000.wav"
    seconds = speech(long_dub, "Esta es una frase muy larga que no cabe de ninguna manera en tres segundos de audio "
                               "porque sigue y sigue hablando sin parar durante mucho tiempo")
    assert seconds > 3 * 1.3 + 0.5
    out = collect(msg(store, job_dir, long_dub), store, reg, settings)
    assert out.fallback_reason is None
    fitted = store.path(out.dub_key)
    assert fitted.stat().st_size == SLOT * 4  # exactly the slot: 48 kHz stereo s16
    seg = reg.segment("s", 0)
    assert seg.stretch_ratio == pytest.approx(1.3)
    assert seg.trimmed_s == pytest.approx(seconds / 1.3 - SLOT / AUDIO_RATE, abs=0.05)


def test_a_slightly_long_dub_is_only_stretched_and_a_short_one_padded(env):
    reg, store, job_dir, settings = env
    dub = job_dir / "dub_00000.wav"
    seconds = speech(dub, "Hola a todos, buenos días", 150)
    out = collect(msg(store, job_dir, dub), store, reg, settings)
    seg = reg.segment("s", 0)
    if seconds * AUDIO_RATE > SLOT:
        assert 1.0 < seg.stretch_ratio <= 1.3 and seg.trimmed_s == 0
    else:
        assert seg.stretch_ratio == 1.0 and seg.trimmed_s == 0
    assert store.path(out.dub_key).stat().st_size == SLOT * 4


def test_undecodable_dub_falls_back_with_a_reason(env):
    reg, store, job_dir, settings = env
    bad = job_dir / "dub_00000.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    out = collect(msg(store, job_dir, bad), store, reg, settings)
    assert out.fallback_reason and out.fallback_reason.startswith("collect_failed")
    seg = reg.segment("s", 0)
    assert seg.dub == "fallback" and seg.dub_reason.startswith("collect_failed")
    # remux passes a fallback through untouched
    assert remux(out, store, reg, settings).fallback_reason == out.fallback_reason


def test_a_task_redelivered_after_the_deadline_does_no_work(env):
    reg, store, job_dir, settings = env
    dub = job_dir / "dub_00000.wav"
    speech(dub, "Hola a todos", 150)
    late = msg(store, job_dir, dub, deadline_at=1000.0)  # its worker died; the fallback went out at 1000
    reg.update_segment("s", 0, status="fallback", reason="late: the dub was not ready at the deadline")
    assert collect(late, store, reg, settings, clock=lambda: 1005.0) == late
    assert remux(late.model_copy(update={"dub_format": "fit"}), store, reg, settings, clock=lambda: 1005.0).dub_key \
        == late.dub_key
    seg = reg.segment("s", 0)
    assert seg.status == "fallback" and seg.dub is None and seg.piece is None  # as the publisher left it
    assert not list(job_dir.glob("fit_*")) and not list(job_dir.glob("piece_*"))
