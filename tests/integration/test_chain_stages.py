"""The chain's media stages as plain functions, with real ffmpeg, real files and a real Redis."""

import subprocess
import wave

import pytest
import redis

from worker.core.messages import DubAudio, DubbedSegment, FittedSegment, SegmentWork
from worker.core.segments import DubOutcome, ReasonCode, Segment, SegmentStatus
from worker.core.settings import load_settings
from worker.core.timing import AUDIO_RATE
from worker.pipeline.collect import fit_and_mix
from worker.pipeline.remux import remux_piece
from worker.state.registry import StreamRegistry
from worker.state.store import make_store

pytestmark = pytest.mark.integration
SLOT = 1024 * 141  # about 3 s at 48 kHz
DUB_RATE = 22050


@pytest.fixture(params=["directory", "object-store"])
def env(request, tmp_path, redis_url):
    """Each stage test runs on both stores: the local directory and an S3-compatible bucket (whose
    work directory is only a scratch: what the stages read comes from the bucket)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    reg = StreamRegistry(client)
    store_url = request.getfixturevalue("s3_url") if request.param == "object-store" else ""
    settings = load_settings(redis_url=redis_url, hook_insecure=True, max_stretch=1.3, store_url=store_url,
                             store_dir=tmp_path / "store")
    store = make_store(settings)
    job_dir = store.work_dir("s", "j1")
    reg.start("s", "test")
    reg.add_segment("s", Segment(sequence=0, start_s=0, end_s=3, file="s/j1/seg.ts"), 1)
    (job_dir / "orig_00000.pcm").write_bytes(b"\x10\x00" * 2 * SLOT)
    store.put(job_dir / "orig_00000.pcm")
    store.discard(job_dir / "orig_00000.pcm")
    return reg, store, job_dir, settings


def speech(path, text, rate_wpm=175):
    subprocess.run(["espeak-ng", "-v", "es", "-s", str(rate_wpm), "-w", str(path), text], check=True, timeout=30)
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def tone(path, seconds):
    """A dub of exactly ``seconds`` (mono 22050 Hz WAV), so the test, not espeak, decides its length."""
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=300:sample_rate={DUB_RATE}:duration={seconds}", "-ac", "1", str(path)],
                   check=True, timeout=30)
    return path


def work(store, job_dir, **kw):
    base = dict(stream_id="s", job_id="j1", sequence=0, segment_key="s/j1/seg.ts",
                orig_key=store.key_of(job_dir / "orig_00000.pcm"), start_s=0, end_s=3, audio_start_sample=0,
                audio_samples=SLOT, deadline_at=1e12, source_language="en", target_language="es",
                voice_profile="default")
    base.update(kw)
    return SegmentWork(**base)


def dubbed(store, job_dir, dub, **kw):
    audio = DubAudio(key=store.put(dub), format="wav", sample_rate_hz=DUB_RATE, channels=1) if dub else None
    return DubbedSegment(work=work(store, job_dir, **kw), dub=audio)


def test_a_dub_much_longer_than_its_slot_is_stretched_to_the_max_then_trimmed(env):
    reg, store, job_dir, settings = env
    long_dub = job_dir / "dub_00000.wav"
    seconds = speech(long_dub, "Esta es una frase muy larga que no cabe de ninguna manera en tres segundos de audio "
                               "porque sigue y sigue hablando sin parar durante mucho tiempo")
    assert seconds > 3 * 1.3 + 0.5
    out = fit_and_mix(dubbed(store, job_dir, long_dub), store, reg, settings)
    assert out.fallback is None
    assert len(store.read(out.fit_key)) == SLOT * 4  # exactly the slot: 48 kHz stereo s16
    seg = reg.segment("s", 0)
    assert seg.stretch_ratio == pytest.approx(1.3)
    assert seg.trimmed_s == pytest.approx(seconds / 1.3 - SLOT / AUDIO_RATE, abs=0.05)


def test_a_slightly_long_dub_is_only_stretched(env):
    reg, store, job_dir, settings = env
    slot_s = SLOT / AUDIO_RATE  # 3.008 s
    out = fit_and_mix(dubbed(store, job_dir, tone(job_dir / "dub_00000.wav", slot_s * 1.2)), store, reg, settings)
    seg = reg.segment("s", 0)
    assert seg.stretch_ratio == pytest.approx(1.2, abs=0.002) and seg.trimmed_s == 0
    assert len(store.read(out.fit_key)) == SLOT * 4


def test_a_short_dub_is_padded_not_stretched(env):
    reg, store, job_dir, settings = env
    out = fit_and_mix(dubbed(store, job_dir, tone(job_dir / "dub_00000.wav", 1.0)), store, reg, settings)
    seg = reg.segment("s", 0)
    assert seg.stretch_ratio == 1.0 and seg.trimmed_s == 0
    fitted = store.read(out.fit_key)
    assert len(fitted) == SLOT * 4
    # the dub's 1 s sits at the start, mixed over the ducked original; the rest is the ducked original only
    tail = fitted[-4 * AUDIO_RATE // 2:]
    assert len(set(tail)) <= 4, "the padded tail carries the dub"


def test_undecodable_dub_falls_back_with_a_reason(env):
    reg, store, job_dir, settings = env
    bad = job_dir / "dub_00000.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    out = fit_and_mix(dubbed(store, job_dir, bad), store, reg, settings)
    assert out.fallback is not None and out.fallback.code is ReasonCode.COLLECT_FAILED
    seg = reg.segment("s", 0)
    assert seg.dub is DubOutcome.FALLBACK and seg.dub_reason_code is ReasonCode.COLLECT_FAILED
    # remux passes a fallback through untouched, and makes no piece
    piece = remux_piece(out, store, reg, settings)
    assert piece.fallback == out.fallback and piece.piece_key is None
    assert not list(job_dir.glob("piece_*"))


def test_a_task_redelivered_after_the_deadline_does_no_work(env):
    reg, store, job_dir, settings = env
    dub = tone(job_dir / "dub_00000.wav", 1.0)
    late = dubbed(store, job_dir, dub, deadline_at=1000.0)  # its worker died; the fallback went out at 1000
    reg.update_segment("s", 0, status=SegmentStatus.FALLBACK, reason="the dub was not ready at the deadline",
                       reason_code=ReasonCode.LATE)
    fitted = fit_and_mix(late, store, reg, settings, clock=lambda: 1005.0)
    assert fitted.fit_key is None and fitted.fallback is None
    # a redelivered remux whose fit exists still does nothing past the deadline
    (job_dir / "fit_00000.pcm").write_bytes(bytes(SLOT * 4))
    ready = FittedSegment(work=late.work, fit_key=store.put(job_dir / "fit_00000.pcm"))
    assert remux_piece(ready, store, reg, settings, clock=lambda: 1005.0).piece_key is None
    seg = reg.segment("s", 0)
    assert seg.status is SegmentStatus.FALLBACK and seg.dub is None and seg.piece is None  # as the publisher left it
    assert seg.stretch_ratio is None
    assert not list(job_dir.glob("piece_*"))


def test_remux_makes_a_piece_that_any_host_reads_from_the_store(env):
    reg, store, job_dir, settings = env
    seg = job_dir / "seg.ts"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=160x120:rate=25:duration=3", "-f", "lavfi", "-i", "sine=duration=3",
                    "-c:v", "libx264", "-g", "25", "-c:a", "aac", "-f", "mpegts", str(seg)], check=True, timeout=60)
    store.put(seg)
    store.discard(seg)
    (job_dir / "fit_00000.pcm").write_bytes(bytes(SLOT * 4))
    fitted = FittedSegment(work=work(store, job_dir), fit_key=store.put(job_dir / "fit_00000.pcm"))
    store.discard(job_dir / "fit_00000.pcm")
    out = remux_piece(fitted, store, reg, settings)
    assert out.fallback is None and out.piece_key == "s/j1/piece_00000.ts"
    with store.fetch(out.piece_key) as piece:
        streams = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0",
                                  str(piece)], capture_output=True, text=True, check=True).stdout.split()
    assert set(streams) == {"audio", "video"}
    assert reg.segment("s", 0).piece == out.piece_key


def test_a_dub_in_float_pcm_is_read_as_the_seed_full_server_may_send_it(env):
    reg, store, job_dir, settings = env
    f32 = job_dir / "dub_00000.f32"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=300:sample_rate={DUB_RATE}:duration=2.5", "-ac", "1", "-f", "f32le", str(f32)],
                   check=True, timeout=30)
    dub = DubbedSegment(work=work(store, job_dir), dub=DubAudio(key=store.put(f32), format="pcm_f32le",
                                                                  sample_rate_hz=DUB_RATE, channels=1))
    out = fit_and_mix(dub, store, reg, settings)
    assert out.fallback is None and len(store.read(out.fit_key)) == SLOT * 4
    seg = reg.segment("s", 0)  # 2.5 s read as 2.5 s (4-byte samples): no stretch; as s16 it would be 5 s
    assert seg.stretch_ratio == 1.0 and seg.trimmed_s == 0
