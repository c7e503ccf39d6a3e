import base64

import pytest
from pydantic import ValidationError

from bench.support.wer import wer
from worker.core.stats import percentile
from worker.sts.audio import AudioError, check_audio
from worker.sts.languages import check_config
from worker.sts.protocol import AudioIn, FragmentData, FragmentProcessed, StreamConfig, encode_audio
from worker.sts.sessions import FairQueue, QueueFull, StreamSession, backpressure


def session(max_inflight=3):
    return StreamSession("sid", "s", "sess", StreamConfig(), max_inflight, 8000)


def result(seq, status="success", ms=10.0):
    return FragmentProcessed(fragment_id=f"f{seq}", stream_id="s", sequence_number=seq, status=status,
                             processing_time_ms=ms)


def test_results_go_out_in_sequence_order():
    s = session()
    for seq in (0, 1, 2):
        s.accept(seq, 6000)
    assert s.complete(result(2)) == []
    assert s.complete(result(1)) == []
    assert [r.sequence_number for r in s.complete(result(0))] == [0, 1, 2]
    assert s.inflight == 0


def test_duplicate_in_flight_sequence_is_refused():
    s = session()
    s.accept(0, 6000)
    with pytest.raises(ValueError):
        s.accept(0, 6000)


def test_statistics():
    s = session()
    for seq, status, ms in ((0, "success", 10), (1, "partial", 20), (2, "failed", 30)):
        s.accept(seq, 1000)
        s.complete(result(seq, status, ms))
    st = s.statistics()
    assert (st.success_count, st.partial_count, st.failed_count) == (1, 1, 1)
    assert st.avg_processing_time_ms == 20 and st.p95_processing_time_ms == 30
    assert s.total_fragments == 3 and s.total_duration_ms == 3000


def test_percentile():
    assert percentile([], 95) == 0.0
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([5.0], 50) == 5.0


def test_backpressure_levels():
    assert backpressure("s", 3, 3, 0, 6000) is None
    slow = backpressure("s", 4, 3, 5, 6000)
    assert slow.action == "slow_down" and slow.recommended_delay_ms == 3000 and slow.queue_depth == 5
    assert backpressure("s", 6, 3, 0, 6000).action == "pause"


def test_fair_queue_round_robin_bounded_and_pausable():
    q = FairQueue(4)
    for i in range(3):
        q.put("a", f"a{i}")
    q.put("b", "b0")
    assert [q.pop()[1] for _ in range(3)] == ["a0", "b0", "a1"]
    q.put("b", "b1")
    q.put("c", "c0")
    q.put("c", "c1")
    with pytest.raises(QueueFull):
        q.put("c", "c2")
    q.paused.add("c")
    assert [q.pop()[1] for _ in range(2)] == ["b1", "a2"]  # b is next in the rotation
    assert q.pop() is None and not q.ready()
    q.paused.discard("c")
    assert q.ready()
    assert q.drop("c") == ["c0", "c1"] and q.size == 0


def test_fair_queue_serves_a_stream_due_within_the_urgent_window_before_the_turns():
    due = {"a0": 10.0, "a1": 10.2, "b0": 2.9, "c0": 2.5, "d0": 50.0}
    q = FairQueue(10, due=due.__getitem__, urgent_s=1.0)
    for item in ("a0", "a1", "d0", "b0", "c0"):
        q.put(item[0], item)
    # at 0.0 nothing is due within 1 s: turns, as without due times
    assert q.pop(now=0.0)[1] == "a0"
    # at 2.0 c0 (0.5 s left) and b0 (0.9 s) are urgent: the one due first, then the other; a stream's own
    # items keep their order (a1 is not served before a0 was)
    assert [q.pop(now=2.0)[1] for _ in range(2)] == ["c0", "b0"]
    assert [q.pop(now=2.0)[1] for _ in range(2)] == ["d0", "a1"]  # turns again: d's came before a's
    assert q.pop(now=2.0) is None


def test_a_stream_that_calls_every_fragment_urgent_gets_its_turn_and_no_more():
    """A client may send a small budget_ms on every fragment. It goes before the turns only once as many
    other streams' fragments were served since its last as there are other streams waiting: while a and b
    wait, x gets every third serving, as in plain turns, not all of them."""
    due = {f"x{i}": 0.0 for i in range(6)} | {f"{k}{i}": 100.0 for k in "ab" for i in range(4)}
    q = FairQueue(20, due=due.__getitem__, urgent_s=1.0)
    for k in "abx":
        for i in range(6 if k == "x" else 4):
            q.put(k, f"{k}{i}")
    served = [q.pop(now=0.0)[1] for _ in range(14)]
    assert served == ["x0", "a0", "b0", "x1", "a1", "b1", "x2", "a2", "b2", "x3", "a3", "x4", "b3", "x5"]
    assert q.pop(now=0.0) is None


def audio(fmt="pcm_s16le", rate=16000, ch=1, data=b"\x00\x00" * 100, **kw):
    return AudioIn(format=fmt, sample_rate_hz=rate, channels=ch, duration_ms=10, data=data, **kw)


@pytest.mark.parametrize("a,code", [
    (audio(fmt="mp3"), "UNSUPPORTED_FORMAT"),
    (audio(rate=11025), "UNSUPPORTED_SAMPLE_RATE"),
    (audio(ch=6), "UNSUPPORTED_CHANNELS"),
    (audio(data=b"\x00" * 2000), "FRAGMENT_TOO_LARGE"),
    (audio(data=b"\x00" * 3), "DECODE_ERROR"),
    (audio(fmt="wav", data=b"RIFFnonsense"), "DECODE_ERROR"),
    (audio(fmt="m4a", data=b"\x00" * 16), "DECODE_ERROR"),
    (audio(data=b""), "INVALID_AUDIO"),
    (AudioIn(format="wav", sample_rate_hz=16000, channels=1, duration_ms=1, data_base64="%%%"), "INVALID_AUDIO"),
])
def test_check_audio_codes(a, code):
    with pytest.raises(AudioError) as exc:
        check_audio(a, max_bytes=1000)
    assert exc.value.code == code


def test_check_audio_accepts_base64_and_binary():
    raw = b"\x01\x00" * 50
    assert check_audio(audio(data=raw), 1000) == raw
    b64 = AudioIn(format="pcm_s16le", sample_rate_hz=16000, channels=1, duration_ms=1,
                  data_base64=base64.b64encode(raw).decode())
    assert check_audio(b64, 1000) == raw


def test_audio_needs_a_payload():
    with pytest.raises(ValidationError):
        AudioIn(format="wav", sample_rate_hz=16000, channels=1, duration_ms=1)


def test_fragment_wire_round_trip_keeps_binary():
    frag = FragmentData(fragment_id="f", stream_id="s", sequence_number=0, audio=audio())
    wire = frag.model_dump(mode="python", exclude_none=True)
    assert isinstance(wire["audio"]["data"], bytes)
    out = encode_audio(b"abc", "wav", 22050, 1, 5.0, binary=False)
    assert out.to_wire()["data_base64"] == base64.b64encode(b"abc").decode() and out.raw() == b"abc"
    assert encode_audio(b"abc", "wav", 22050, 1, 5.0, binary=True).to_wire()["data"] == b"abc"


def test_language_and_voice_checks():
    assert check_config("en", "es", "default", frozenset({"eng-spa"})) is None
    problem = check_config("de", "es", "default", None)
    assert problem is not None and problem.code == "UNSUPPORTED_LANGUAGE"
    assert "unsupported language pair" in problem.message
    missing = check_config("en", "fr", "default", frozenset({"eng-spa"}))
    assert missing is not None and missing.code == "UNSUPPORTED_LANGUAGE"
    assert "apt-get install apertium-fr-es" in missing.message
    voice = check_config("en", "es", "robot", None)
    assert voice is not None and voice.code == "UNSUPPORTED_VOICE" and "voice_profile" in voice.message


@pytest.mark.parametrize("ref,hyp,expected", [
    ("hello world", "hello world", 0.0),
    ("Hello, world!", "hello world", 0.0),
    ("a b c d", "a x c d", 0.25),
    ("a b c d", "a b c", 0.25),
    ("a b", "a b c d", 1.0),
    ("", "", 0.0),
    ("", "x", 1.0),
])
def test_wer(ref, hyp, expected):
    assert wer(ref, hyp) == pytest.approx(expected)


def test_fair_queue_is_bounded_in_bytes_too():
    q = FairQueue(100, capacity_bytes=1000)
    q.put("a", "a0", 600)
    with pytest.raises(QueueFull, match="MiB of audio"):
        q.put("b", "b0", 500)
    q.put("b", "b1", 400)
    assert q.pop() == ("a", "a0") and q.bytes == 400
    q.put("b", "b2", 500)
    assert q.drop("b") == ["b1", "b2"] and q.bytes == 0 and q.size == 0


def test_a_fragment_waits_no_longer_than_its_client_does():
    from worker.sts.work import wait_limit_ms

    assert wait_limit_ms(8000, {}) == 8000
    assert wait_limit_ms(8000, {"budget_ms": 1900}) == 1900
    assert wait_limit_ms(1000, {"budget_ms": 5000}) == 1000
    assert wait_limit_ms(8000, {"budget_ms": "soon"}) == 8000 and wait_limit_ms(8000, {"budget_ms": True}) == 8000
    assert wait_limit_ms(8000, {"budget_ms": -5}) == 8000


def test_the_whisper_beam_is_one_or_more():
    from click.testing import CliRunner

    from worker.cli.main import main
    from worker.sts.engines import OfflineEngine, make_engine

    assert make_engine("offline").beam_size == 5 and make_engine("offline", beam_size=1).beam_size == 1
    # unset, the compute type follows the device (int8 on the CPU, float16 on a GPU); the beam is 5 on both,
    # used when a fragment has the time for it (tests/unit/test_beam.py)
    cpu, gpu = make_engine("offline", device="cpu"), make_engine("offline", device="cuda")
    assert (cpu.beam_size, cpu.compute_type, gpu.beam_size, gpu.compute_type) == (5, "int8", 5, "float16")
    assert make_engine("offline", device="cuda:1", beam_size=1, compute_type="int8").beam_size == 1
    with pytest.raises(ValueError, match="beam_size"):
        OfflineEngine(beam_size=0)
    res = CliRunner().invoke(main, ["sts", "--engine", "offline", "--insecure", "--beam-size", "0"])
    assert res.exit_code == 2 and "--beam-size" in res.output
    res = CliRunner().invoke(main, ["sts", "--engine", "offline", "--insecure"], env={"LIVEDUB_STS_BEAM_SIZE": "0"})
    assert res.exit_code == 2 and "--beam-size" in res.output  # the variable is read as the option
