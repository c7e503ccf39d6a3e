"""The offline engine on real speech: espeak-ng English -> Whisper tiny.en -> Apertium -> espeak-ng."""

import base64
import io
import subprocess
import sys
import wave

import pytest
import requests

from bench.support.wer import wer
from tests.support import free_port, sts_server
from worker.media.procs import wait_until
from worker.media.wav import wav_duration_ms
from worker.sts.client import StsClient
from worker.sts.protocol import AudioIn, FragmentData, StreamConfig, StreamInit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
SPOKEN = "Good morning everyone. Today we will talk about the weather and the news."
SPANISH = {"el", "la", "los", "las", "de", "y", "que", "en", "hoy", "nosotros", "todo", "buenos", "noticias",
           "tiempo", "hablaremos", "mañana"}


def test_offline_engine_dubs_real_speech(tmp_path):
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), SPOKEN], check=True, timeout=30)
    raw = wav.read_bytes()
    with sts_server("--engine", "offline") as url:
        def loaded():
            return requests.get(f"{url}/health", timeout=5).json()["models"]["asr"]["state"] == "ready"

        wait_until(loaded, 60, 0.2, "the Whisper model to load")
        health = requests.get(f"{url}/health", timeout=5).json()
        assert health["engine"] == "offline" and "eng-spa" in health["models"]["mt"]["modes"]
        assert health["models"]["asr"]["beam_size"] == 5  # used when a fragment has the time for it
        with StsClient(url, token="sts-test-token-0123") as c:
            c.init_stream(StreamInit(stream_id="off"))
            c.send_fragment(FragmentData(fragment_id="o0", stream_id="off", sequence_number=0, audio=AudioIn(
                format="wav", sample_rate_hz=22050, channels=1, duration_ms=wav_duration_ms(raw), data=raw)))
            res = c.wait_processed("o0", 60)
            # the same speech as a seed (v1.0) worker sends it: raw ADTS AAC labelled m4a, in base64
            aac = tmp_path / "speech.aac"
            subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(wav), "-ar", "48000",
                            "-c:a", "aac", "-f", "adts", str(aac)], check=True, timeout=30)
            c.send_fragment(FragmentData(fragment_id="o1", stream_id="off", sequence_number=1, audio=AudioIn(
                format="m4a", sample_rate_hz=48000, channels=1, duration_ms=round(wav_duration_ms(raw)),
                data_base64=base64.b64encode(aac.read_bytes()).decode())))
            v1 = c.wait_processed("o1", 60)
            decodes = requests.get(f"{url}/health", timeout=5).json()["models"]["asr"]["decodes"]
    # both decoded on a window sized to the speech (about 5 s), not on Whisper's 30 s, with the beam (no hurry)
    assert decodes == {"windowed": 2, "timestamped": 0, "full": 0, "silent": 0, "wide": 2}, decodes
    assert v1.status == "success" and wer(SPOKEN, v1.transcript) <= 0.2, (v1.error, v1.transcript)
    assert v1.dubbed_audio.format == "m4a" and v1.dubbed_audio.raw()[4:8] == b"ftyp"  # answered in MP4
    assert v1.dubbed_audio.data_base64  # and as base64, as it came
    assert res.status == "success", res.error
    assert wer(SPOKEN, res.transcript) <= 0.2, res.transcript
    words = set(res.translated_text.lower().replace(".", " ").replace(",", " ").split())
    assert res.translated_text and res.translated_text != res.transcript and words & SPANISH, res.translated_text
    with wave.open(io.BytesIO(res.dubbed_audio.raw())) as w:
        assert w.getnframes() > w.getframerate()  # over a second of speech
    assert res.dubbed_audio.duration_ms == round(wav_duration_ms(res.dubbed_audio.raw()))  # v1.0: an int
    assert res.stage_timings.asr_ms > 0 and res.stage_timings.translation_ms > 0 and res.stage_timings.tts_ms > 0
    assert res.metadata["asr_model"] == "faster-whisper tiny.en"


def test_an_engine_that_cannot_load_its_model_says_why_and_exits(tmp_path):
    """No fallbacks served by a service without a model: /health is 503 with the reason, then it exits."""
    missing = tmp_path / "no-such-model"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "sts", "--engine", "offline", "--insecure",
                             "--port", str(port), "--model-dir", str(missing)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[dict] = []

    def health_or_exit():
        if proc.poll() is not None:
            return True
        try:
            resp = requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
        except requests.ConnectionError:
            return False
        seen.append({"code": resp.status_code, **resp.json()})
        return False

    try:
        wait_until(health_or_exit, 60, 0.05, "the service to exit")
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "cannot serve" in err and str(missing) in err, err
    assert all(h["code"] == 503 and h["status"] in ("loading", "unavailable") for h in seen), seen
    print(f"health answers before the exit: {seen}")


def test_a_unit_that_goes_on_with_a_sentence_is_translated_with_its_beginning(tmp_path):
    """Speech mode's context in the fragment's metadata: the second half of a sentence cut inside speech is
    translated as the rest of the whole sentence, without saying its beginning again."""
    wav = tmp_path / "rest.wav"
    text = "met this afternoon to discuss the budget"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True, timeout=30)
    raw = wav.read_bytes()
    audio = AudioIn(format="wav", sample_rate_hz=22050, channels=1, duration_ms=wav_duration_ms(raw), data=raw)
    # Both get the same ASR prompt (without it, greedy tiny.en drops the first word "met" on some CPUs);
    # only the second says the unit before was cut inside speech.
    finished = {"context": {"previous_transcript": "The city council.", "continues_sentence": False}}
    context = {"context": {"previous_transcript": "The city council.", "continues_sentence": True}}
    with sts_server("--engine", "offline") as url, StsClient(url, token="sts-test-token-0123") as c:
        c.init_stream(StreamInit(stream_id="ctx"))
        c.send_fragment(FragmentData(fragment_id="c0", stream_id="ctx", sequence_number=0, audio=audio,
                                     metadata=finished))
        alone = c.wait_processed("c0", 60)
        c.send_fragment(FragmentData(fragment_id="c1", stream_id="ctx", sequence_number=1, audio=audio,
                                     metadata=context))
        within = c.wait_processed("c1", 60)
    assert alone.status == within.status == "success", (alone.error, within.error)
    assert alone.transcript.lower().startswith("met") and within.transcript.lower().startswith("met")
    assert alone.translated_text.split()[0].lower() == "cumplido", alone.translated_text  # "met", no subject
    assert within.translated_text.split()[0].lower() == "cumplió", within.translated_text  # "the council met"
    assert "ayuntamiento" not in within.translated_text.lower()  # the beginning was dubbed already


def test_the_offline_engine_is_warm_when_it_says_ready():
    """The cold start (Silero's session, the decoder's first run, the Apertium pipelines) is paid before
    /health says ready, not by a stream's first unit; the warm-up is not counted as a decode."""
    from faster_whisper.vad import get_vad_model

    from worker.sts.asr import AsrCounts
    from worker.sts.engines import OfflineEngine

    get_vad_model.cache_clear()
    engine = OfflineEngine(cpu_threads=2)
    try:
        engine.load()
        assert engine.readiness() is None
        assert get_vad_model.cache_info().currsize == 1  # the voice activity filter's model is loaded
        pipe = engine.translator.pipes["eng-spa"]
        assert pipe.proc is not None and pipe.proc.poll() is None and pipe.starts == 1
        assert engine.asr.counts == AsrCounts()
        starts = pipe.starts
        wav = subprocess.run(["espeak-ng", "-v", "en-us", "--stdout", SPOKEN], capture_output=True,
                             check=True, timeout=30).stdout
        res = engine.process(AudioIn(format="wav", sample_rate_hz=22050, channels=1,
                                     duration_ms=wav_duration_ms(wav), data=wav), wav, StreamConfig())
        assert res.status == "success" and res.translated_text
        assert pipe.starts == starts  # the unit used the pipeline the warm-up started
        assert engine.asr.counts == AsrCounts(windowed=1, wide=1)
    finally:
        engine.translator.close()


def test_the_wide_beam_is_used_only_when_the_client_waits_long_enough(tmp_path):
    """The default beam (5): a fragment whose client waits long (``metadata.budget_ms``) is decoded with the
    beam; one whose client waits less than the engine's recent chains would take with it, greedily, so
    that its answer still comes in time."""
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), SPOKEN], check=True, timeout=30)
    raw = wav.read_bytes()
    audio = AudioIn(format="wav", sample_rate_hz=22050, channels=1, duration_ms=wav_duration_ms(raw), data=raw)
    with sts_server("--engine", "offline") as url, StsClient(url, token="sts-test-token-0123") as c:
        c.init_stream(StreamInit(stream_id="beam"))
        counts = []
        for seq, budget_ms in enumerate((20_000, 150)):
            c.send_fragment(FragmentData(fragment_id=f"b{seq}", stream_id="beam", sequence_number=seq,
                                         audio=audio, metadata={"budget_ms": budget_ms}))
            res = c.wait_processed(f"b{seq}", 60)
            assert res.status == "success" and wer(SPOKEN, res.transcript) <= 0.2, (res.error, res.transcript)
            counts.append(requests.get(f"{url}/health", timeout=5).json()["models"]["asr"]["decodes"]["wide"])
    assert counts == [1, 1], counts  # the first with the beam; the second (150 ms left) greedy
