"""A unit's own words when it is cut inside speech (worker/sts/bounds.py), and how the bounds travel:
fragment metadata, the server's memory of a stream's last unit, the answer read back. Pure."""

import time

import pytest

from worker.core.messages import UnitWork
from worker.core.timing import AUDIO_RATE, FRAME_BYTES
from worker.pipeline.sts_dispatch import spoken_until
from worker.pipeline.sts_fragment import fragment_for
from worker.sts.bounds import Bounds, LastUnits, Word, own_words, skip_after
from worker.sts.context import SpeechContext, filled

# "... raise local taxes by 2%": the cut at 2.27 s went through "taxes"; the audio runs on to 2.77 s
BEFORE = [Word(" raise", 1.42, 1.68), Word(" local", 1.68, 2.06), Word(" taxes", 2.1, 2.48), Word(" by", 2.48, 2.74)]
# the next unit, from the cut: the rest of "taxes" heard as a word, then its own
AFTER = [Word(" is", 0.0, 0.18), Word(" by", 0.18, 0.46), Word(" 2", 0.46, 0.78), Word("%", 0.78, 1.18)]


def test_a_unit_keeps_the_words_that_start_before_its_cut_and_says_where_the_last_ends():
    assert own_words(BEFORE, Bounds(until_s=2.27)) == ("raise local taxes", 2.48)
    assert own_words(BEFORE, Bounds()) == ("raise local taxes by", None)  # no bounds: every word, no report
    assert own_words(BEFORE, Bounds(until_s=1.0)) == ("", None)  # nothing of its own heard


def test_the_next_unit_drops_only_the_words_that_end_within_the_skip():
    skip = skip_after(2.48, 2.27)
    assert skip == pytest.approx(0.21)
    assert own_words(AFTER, Bounds(skip_s=skip)) == ("by 2%", None)
    # the aligner puts the first word at 0: a word that runs well past the skip is the unit's own
    assert own_words([Word(" to", 0.0, 0.56), Word(" discuss", 0.56, 0.98)], Bounds(skip_s=0.29))[0] == "to discuss"


def test_a_word_that_hardly_runs_past_the_cut_leaves_no_skip():
    assert skip_after(2.37, 2.27) == 0.0  # 0.1 s: the aligner's error, a word that starts at the cut
    assert skip_after(None, 2.27) == 0.0
    assert skip_after(9.0, 2.27) == 1.0  # never more than a second


def test_the_context_reads_bounds_from_the_metadata_and_ignores_nonsense():
    ctx = SpeechContext.from_metadata({"context": {"previous_transcript": "x", "until_ms": 2270, "skip_ms": 210}})
    assert ctx is not None and ctx.bounds == Bounds(2.27, 0.21)
    for bad in ({"until_ms": -1}, {"until_ms": "2270"}, {"until_ms": True}, {"until_ms": float("nan")},
                {"skip_ms": 5000}):
        ctx = SpeechContext.from_metadata({"context": bad})
        assert ctx is not None and not ctx.bounds.active, bad


def test_the_server_fills_in_the_unit_before_only_for_the_next_unit():
    last = LastUnits(most=2)
    last.note("s", 4, "raise local taxes", Bounds(until_s=2.27), 2.48)
    assert last.before("s", 5) == ("raise local taxes", pytest.approx(0.21))
    assert last.before("s", 6) is None and last.before("other", 5) is None
    goes_on = SpeechContext("", continues_sentence=True)
    assert filled(goes_on, last.before("s", 5)) == SpeechContext("raise local taxes", True, Bounds(None, 0.21))
    after_pause = SpeechContext("", continues_sentence=False)
    assert filled(after_pause, last.before("s", 5)) == SpeechContext("raise local taxes", False, Bounds())
    told = SpeechContext("what the client knew", True, Bounds(None, 0.3))
    assert filled(told, last.before("s", 5)) == told  # what the client sent stands
    last.note("t", 0, "", Bounds(), None)
    last.note("u", 0, "", Bounds(), None)
    assert last.before("s", 5) is None  # the oldest stream was forgotten


def work(look_s: float = 0.5, skip_s: float = 0.0) -> UnitWork:
    return UnitWork(stream_id="s", job_id="job-0123456789", sequence=3, orig_key="k", start_s=10.0, end_s=12.0,
                    audio_samples=2 * AUDIO_RATE, look_samples=round(look_s * AUDIO_RATE), deadline_at=0.0,
                    source_language="en", target_language="es", voice_profile="default", context="before",
                    continues_sentence=True, skip_s=skip_s)


CAPS = {"binary_data": True, "formats": ["pcm_s16le"]}


def test_the_speech_after_a_unit_goes_only_to_a_server_that_keeps_a_units_own_words():
    w = work(skip_s=0.21)
    pcm = bytes((w.audio_samples + w.look_samples) * FRAME_BYTES)
    plain = fragment_for(w, "f", pcm, CAPS, 2000, "ffmpeg", time.time)
    assert len(plain.audio.raw()) == w.audio_samples * FRAME_BYTES and plain.audio.duration_ms == 2000
    assert plain.metadata["context"] == {"previous_transcript": "before", "continues_sentence": True}
    bounded = fragment_for(w, "f", pcm, {**CAPS, "speech_bounds": True}, 2000, "ffmpeg", time.time)
    assert len(bounded.audio.raw()) == len(pcm) and bounded.audio.duration_ms == 2500
    assert bounded.metadata["context"] == {"previous_transcript": "before", "continues_sentence": True,
                                           "until_ms": 2000, "skip_ms": 210}


def test_where_the_last_word_ends_is_read_back_only_when_it_can_be_true():
    w = work()
    assert spoken_until(w, {"spoken_until_ms": 2210}) == pytest.approx(12.21)
    for bad in (None, {}, {"spoken_until_ms": -5}, {"spoken_until_ms": 2600}, {"spoken_until_ms": "2210"},
                {"spoken_until_ms": True}):
        assert spoken_until(w, bad) is None, bad
    assert spoken_until(work(look_s=0.0), {"spoken_until_ms": 1500}) is None  # sent without bounds
