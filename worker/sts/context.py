"""Context across units (speech mode): what came before a fragment, as it rides in the fragment's
``metadata`` (which the seed's protocol leaves open), and the pure steps that use it.

- The ASR gets the previous units' transcript as its prompt.
- Translation works on whole sentences: a unit that goes on with a sentence the unit before it began is
  translated together with that beginning, and the translation of the beginning (already dubbed) is taken
  off the front, so nothing is said twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

PROMPT_CHARS = 200
_END = re.compile(r"[.!?…]+[\"')\]]*\s*$")
_WORD = re.compile(r"[^\w]+", re.UNICODE)


@dataclass(frozen=True)
class SpeechContext:
    previous_transcript: str = ""
    continues_sentence: bool = False  # the unit before was cut inside speech

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> SpeechContext | None:
        """The fragment's context, or None; anything malformed is ignored (context is a hint)."""
        ctx = metadata.get("context")
        if not isinstance(ctx, dict):
            return None
        prev = ctx.get("previous_transcript")
        prev = prev[-2000:] if isinstance(prev, str) else ""
        return cls(prev, ctx.get("continues_sentence") is True)

    @property
    def prompt(self) -> str | None:
        """The ASR prompt: the end of what was said before. Pure."""
        return self.previous_transcript[-PROMPT_CHARS:].strip() or None

    @property
    def sentence_start(self) -> str:
        """The beginning of the sentence this unit goes on with ("" when the last one was finished). Pure."""
        text = self.previous_transcript.strip()
        if not text:
            return ""
        if text.endswith(("...", "…")):  # the ASR's own mark of a sentence that goes on
            text, continues = text.rstrip(".… "), True
        else:
            continues = self.continues_sentence
        if continues:
            text = _END.sub("", text)  # the ASR put a full stop where the unit was cut
        elif _END.search(text):
            return ""
        return re.split(r"(?<=[.!?…])\s+", text)[-1].strip()


def joined(start: str, text: str) -> str:
    """The sentence's beginning and this unit's words, as one sentence. Pure."""
    if not start:
        return text
    words = text.strip()
    if words[:1].isupper() and not words.startswith("I "):
        words = words[:1].lower() + words[1:]
    return f"{start} {words}"


def _words(text: str) -> list[str]:
    return [w for w in _WORD.split(text.lower()) if w]


def strip_prefix(translated_start: str, translated_whole: str) -> str | None:
    """The translation of the whole sentence less the translation of its beginning, if the whole begins
    with it word for word (case and punctuation aside); else None. Pure."""
    want = _words(translated_start)
    tokens = translated_whole.split()
    got: list[str] = []
    for i, tok in enumerate(tokens):
        if got == want:
            return " ".join(tokens[i:]).strip() or None
        got += _words(tok)
        if len(got) > len(want) or got != want[: len(got)]:
            return None
    return None
