"""Apertium kept running (null-flush mode) translates as ``apertium -u`` does and survives its pipeline's
death or hang. (What it saves per text is measured, not tested: see the session figures in the README.)"""

import os
import signal
import time

import pytest

from worker.sts.apertium import ApertiumPipe, Translator, mode_file
from worker.sts.engines import apertium_once, translate_in_context

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TEXTS = [
    "The city council met this afternoon.",
    "Parents welcomed the move at a crowded meeting last night.",
    "The mayor said\n\nThe mayor said that most of the money will go to the schools.\n",  # paragraphs kept
    "It costs $5 [Music] <b> a/b @x ^y\\z {q} *w #t",  # the stream format's own characters
    "unknownword zzyzx, and then",  # no '*' marks (-u)
    "",
]


def test_the_running_pipeline_translates_as_apertium_does():
    translator = Translator()
    try:
        for text in TEXTS + TEXTS[:2]:  # again: one text's end never leaks into the next
            assert translator.run(text, ("eng-spa",)) == apertium_once(text, ("eng-spa",)), text
        pipe = translator.pipes["eng-spa"]
        assert pipe.starts == 1  # one pipeline for all of them
        # in context, as the engine calls it: the rest of the sentence, not its beginning again
        rest = translate_in_context("met this afternoon.", "The city council", "en", "es", translator.run)
        assert rest == translate_in_context("met this afternoon.", "The city council", "en", "es")
        assert rest and not rest.lower().startswith("el ayuntamiento"), rest
        # "at" was dubbed "en" before the sentence's end was known; the whole says "al final del mes"
        rest = translate_in_context("The end of the month.", "The council will vote on the final plan at", "en",
                                    "es", translator.run)
        assert rest == "al final del mes.", rest  # alone: "El fin del mes."
    finally:
        translator.close()


def test_a_dead_pipeline_is_started_again_and_a_hung_one_gives_up():
    pipe = ApertiumPipe("eng-spa", timeout_s=20)
    try:
        first = pipe.translate("Good morning.")
        assert pipe.proc is not None
        os.killpg(pipe.proc.pid, signal.SIGKILL)  # every stage of it
        pipe.proc.wait()
        assert pipe.translate("Good morning.") == first and pipe.starts == 2
        assert pipe.proc is not None
        os.killpg(pipe.proc.pid, signal.SIGSTOP)  # hung: no answer comes
        pipe.timeout_s = 1.0
        t0 = time.monotonic()
        with pytest.raises(Exception, match="TRANSLATION_FAILED|no answer in time") as err:
            pipe.translate("Good evening.")
        assert time.monotonic() - t0 < 5 and getattr(err.value, "code", "") == "TRANSLATION_FAILED"
        assert pipe.proc is None  # killed, group and all
        pipe.timeout_s = 20
        assert pipe.translate("Good morning.") == first and pipe.starts == 3
    finally:
        pipe.close()


def test_mode_names_never_reach_a_path_outside_the_modes():
    for bad in ("../etc/passwd", "", ".hidden", "a/b"):
        with pytest.raises(ValueError):
            mode_file(bad)
    assert mode_file("eng-spa", "/d").as_posix() == "/d/modes/eng-spa.mode"
