"""Context across units: what rides in the fragment's metadata and how the STS service uses it. Pure."""

from worker.core.messages import UnitWork
from worker.sts.context import SpeechContext, joined, strip_prefix


def unit(**kw):
    return UnitWork(stream_id="s", job_id="j" * 8, sequence=3, orig_key="k", start_s=1.0, end_s=2.0,
                    audio_samples=48000, deadline_at=0, source_language="en", target_language="es",
                    voice_profile="default", **kw)


def test_context_rides_in_metadata_and_reads_back():
    meta = unit(context="The city council.", continues_sentence=True).fragment_metadata()
    ctx = SpeechContext.from_metadata(meta)
    assert ctx == SpeechContext("The city council.", True)
    assert "context" not in unit().fragment_metadata()
    assert SpeechContext.from_metadata({"context": "nonsense"}) is None
    assert SpeechContext.from_metadata({"context": {"previous_transcript": 5}}) == SpeechContext("", False)


def test_the_sentence_a_unit_goes_on_with():
    assert SpeechContext("It rained. The city council.", True).sentence_start == "The city council"
    # closed in a pause: its sentence ended there, even where Whisper wrote no full stop
    assert SpeechContext("It rained. The city council", False).sentence_start == ""
    assert SpeechContext("It rained. The council met.", False).sentence_start == ""
    assert SpeechContext("", True).sentence_start == ""
    assert SpeechContext("It rained. Unless to be rather...", False).sentence_start == "Unless to be rather"


def test_the_prompt_is_the_end_of_what_was_said():
    assert SpeechContext("x" * 500 + ".").prompt == "x" * 199 + "."
    assert SpeechContext("").prompt is None


def test_the_prompt_ends_a_sentence_after_a_pause_and_goes_on_after_a_cut():
    # Whisper follows its prompt's style: no full stop in the prompt, none (and no capital) in the text
    assert SpeechContext("customers that way", False).prompt == "customers that way."
    assert SpeechContext("The council met.", False).prompt == "The council met."
    assert SpeechContext("The city council met this afternoon.", True).prompt == "The city council met this afternoon"
    assert SpeechContext("Unless to be rather...", False).prompt == "Unless to be rather..."
    assert SpeechContext(".", True).prompt is None


def test_joined_continues_the_sentence():
    assert joined("The city council", "Met this afternoon.") == "The city council met this afternoon."
    assert joined("", "Met.") == "Met."
    assert joined("Snow on Friday and", "Saturday, drivers.") == "Snow on Friday and Saturday, drivers."
    assert joined("It rains in", "June.") == "It rains in June."  # a name Apertium knows only with its capital
    assert joined("It", "May rain.") == "It may rain."
    assert joined("So", "I said.") == "So I said."


def test_the_beginning_is_taken_off_the_whole_translation():
    assert strip_prefix("El ayuntamiento", "El ayuntamiento cumplió esta tarde.") == "cumplió esta tarde."
    assert strip_prefix("El ayuntamiento.", "el Ayuntamiento, cumplió") == "cumplió"
    assert strip_prefix("La ciudad", "El ayuntamiento cumplió") is None  # reordered: no clean cut
    assert strip_prefix("El ayuntamiento", "El ayuntamiento") is None


def test_the_beginnings_last_words_may_be_said_again_as_the_whole_sentence_says_them():
    """Apertium translated "...the final plan at" alone as "...el plan final en", and the whole sentence
    "...at the end of the month" as "...el plan final al final del mes": the rest starts where the two
    part, not at a translation of "the end of the month" alone ("El fin del mes")."""
    start = "El consejo votará en el plan final en"
    assert strip_prefix(start, "El consejo votará en el plan final al final del mes.") == "al final del mes."
    assert strip_prefix("Snow es", "Snow está esperado en los cerros.") == "está esperado en los cerros."
    assert strip_prefix("a b c d", "a b x y z") == "x y z"  # two words redone: the most
    assert strip_prefix("a b c d", "a x y z") is None  # three: translated alone
    assert strip_prefix("a b c d", "a x y z", redo=3) == "x y z"
    assert strip_prefix("Alguna tienda", "Algunos dueños de tienda") is None  # nothing shared
    assert strip_prefix("a b", "a b") is None  # nothing left to say
