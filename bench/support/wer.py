"""Word error rate, for checking transcripts against the spoken text."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable


def normalize(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


@functools.cache
def _english() -> Callable[[str], str]:
    from whisper_normalizer.english import EnglishTextNormalizer

    normalizer: Callable[[str], str] = EnglishTextNormalizer()
    return normalizer


def whisper_normalize(text: str) -> list[str]:
    """Whisper's English text normalizer (the one its WER figures use, from the ``whisper-normalizer``
    package): numbers as digits ("two percent" and "2%" are the same words), British spellings as
    American, fillers and contractions evened out."""
    return _english()(text).split()


def wer(reference: str, hypothesis: str, norm: Callable[[str], list[str]] = normalize) -> float:
    """(substitutions + deletions + insertions) / reference words, after ``norm`` (by default lower-casing
    and dropping punctuation). An empty reference gives 0.0 for an empty hypothesis, else 1.0."""
    ref, hyp = norm(reference), norm(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)
