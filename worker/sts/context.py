"""Context across units (speech mode): what came before a fragment, as it rides in the fragment's
``metadata`` (which the seed's protocol leaves open), and the pure steps that use it.

- The ASR gets the previous units' transcript as its prompt.
- Translation works on whole sentences: a unit that goes on with a sentence the unit before it began is
  translated together with that beginning, and the translation of the beginning (already dubbed) is taken
  off the front, so nothing is said twice (but the beginning's last words, where the whole sentence
  translates them otherwise: ``strip_prefix``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from worker.sts.bounds import MAX_SKIP_S, Bounds

PROMPT_CHARS = 200
_END = re.compile(r"[.!?…]+[\"')\]]*\s*$")
_WORD = re.compile(r"[^\w]+", re.UNICODE)
_GOES_ON = ("...", "…")  # the ASR's own mark of a sentence that goes on
# Words English writes with a capital inside a sentence too, which Apertium knows only so ("saturday" is
# left untranslated); "May" and "March" are left out: at a unit's start they are mostly the verbs.
_NAMED = frozenset("monday tuesday wednesday thursday friday saturday sunday january february april june july "
                   "august september october november december".split())
REDO_WORDS = 2  # the beginning's translation may end in this many words the whole sentence says otherwise


@dataclass(frozen=True)
class SpeechContext:
    previous_transcript: str = ""
    continues_sentence: bool = False  # the unit before was cut inside speech, and this one starts at the cut
    bounds: Bounds = field(default_factory=Bounds)  # where its own speech is (worker/sts/bounds.py)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> SpeechContext | None:
        """The fragment's context, or None; anything malformed is ignored (context is a hint)."""
        ctx = metadata.get("context")
        if not isinstance(ctx, dict):
            return None
        prev = ctx.get("previous_transcript")
        prev = prev[-2000:] if isinstance(prev, str) else ""
        until, skip = _ms(ctx.get("until_ms"), 600.0), _ms(ctx.get("skip_ms"), MAX_SKIP_S)
        return cls(prev, ctx.get("continues_sentence") is True, Bounds(until, skip or 0.0))

    @property
    def prompt(self) -> str | None:
        """The ASR prompt: the end of what was said before, its last sentence mark set by how the unit
        before closed. Whisper writes in its prompt's style: after a prompt that ends without a full stop it
        goes on in lower case without punctuation, unit after unit (measured: from one unit cut inside
        speech to the end of the bench's script). So a unit that closed in a pause ends its prompt with a full
        stop, and a unit cut inside speech has the full stop Whisper put at the cut taken off (the sentence
        goes on; with it, Whisper began the next unit with a word that was not said). Pure."""
        text = self.previous_transcript[-PROMPT_CHARS:].strip()
        if not text or text.endswith(_GOES_ON):
            return text or None
        if self.continues_sentence:
            return _END.sub("", text).strip() or None
        return text if _END.search(text) else f"{text}."

    @property
    def sentence_start(self) -> str:
        """The beginning of the sentence this unit goes on with: "" when the unit before closed in a pause
        (its sentence ended there, as the ASR prompt has it), unless the ASR marked it as going on
        ("..."). Pure."""
        text = self.previous_transcript.strip()
        if text.endswith(_GOES_ON):
            text = text.rstrip(".… ")
        elif not self.continues_sentence:
            return ""
        text = _END.sub("", text)  # the ASR put a full stop where the unit was cut
        return re.split(r"(?<=[.!?…])\s+", text)[-1].strip()


def filled(ctx: SpeechContext, before: tuple[str, float] | None) -> SpeechContext:
    """The context with what the server knows of the unit before (its transcript, and the skip its last
    word leaves) where the client did not know it yet when it sent the fragment. Pure."""
    if before is None:
        return ctx
    text, skip = before
    prev = ctx.previous_transcript or text
    skip = ctx.bounds.skip_s or (skip if ctx.continues_sentence else 0.0)
    return replace(ctx, previous_transcript=prev, bounds=Bounds(ctx.bounds.until_s, skip))


def _ms(value: Any, most_s: float) -> float | None:
    """Milliseconds from metadata as seconds, if a number from 0 to ``most_s``; else None. Pure."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value / 1000 if 0 <= value <= most_s * 1000 else None


def joined(start: str, text: str) -> str:
    """The sentence's beginning and this unit's words, as one sentence. Pure."""
    if not start:
        return text
    words = text.strip()
    first = _WORD.split(words, maxsplit=1)[0]
    if words[:1].isupper() and first != "I" and first.lower() not in _NAMED:
        words = words[:1].lower() + words[1:]
    return f"{start} {words}"


def word_list(text: str) -> list[str]:
    return [w for w in _WORD.split(text.lower()) if w]


def strip_prefix(translated_start: str, translated_whole: str, redo: int = REDO_WORDS) -> str | None:
    """The translation of the whole sentence after the words it shares with the translation of its
    beginning (word for word, case and punctuation aside), if those are all of the beginning's translation
    but at most its last ``redo`` words, and at least one; else None.

    The beginning was dubbed alone, so its last words may be translated otherwise once the sentence's end
    is known: "...the final plan at" was dubbed "...el plan final en", and the whole sentence says "...el
    plan final al final del mes". The rest then starts where the two part ("al final del mes"), at the cost
    of up to ``redo`` words said twice in other words. Translated alone instead, it was "El fin del mes":
    measured on every cut between two words of the bench's news sentences (117 cuts) and LibriVox
    sentences (56), the joined translations' chrF against the whole sentences' went from 0.948 and 0.957
    (only an exact match) to 0.971 and 0.978 (`python -m bench.context`). Pure."""
    want = word_list(translated_start)
    tokens = translated_whole.split()
    got: list[str] = []
    shared = 0  # the whole's tokens whose words are the beginning's, in order
    for tok in tokens:
        words = word_list(tok)
        if got + words != want[: len(got) + len(words)]:
            break
        got += words
        shared += 1
    if not got or len(got) < len(want) - redo:
        return None
    return " ".join(tokens[shared:]).strip() or None
