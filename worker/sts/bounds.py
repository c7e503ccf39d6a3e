"""A unit cut inside speech, heard whole at its edges: which of the ASR's words are the unit's own.

A unit that reaches its maximum with no pause is cut at its quietest point, which may fall inside a word
("tax|es"). Decoded as cut, the unit ends on half a word and the next begins on the other half, and
Whisper makes a word of each ("attack", "This is by 2%"). So a unit cut inside speech is sent with the
speech after its cut (``LIVEDUB_SPEECH_LOOKAHEAD_S``, 0.5 s, at most what was heard when it closed;
``until_s``: where its own audio ends), and its decode keeps the words that start before the cut: the
word the cut went through is heard whole and kept. It reports where its last word ends
(``spoken_until_s``). The unit after it, which starts at the cut, is told how far into its audio that
word ran (``skip_s``), and drops the words that end within that.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

# A word the unit before kept must run at least this far past the cut for the next unit to drop anything:
# the aligner's word edges are good to about 0.1 s, and a word that starts at the cut is the next unit's.
MIN_SKIP_S = 0.15
SKIP_SLACK_S = 0.1  # a word of the next unit is dropped only if it ends by the skip and this much more
MAX_SKIP_S = 1.0  # the most the next unit skips


@dataclass(frozen=True)
class Bounds:
    """Where a fragment's own speech is, in seconds from the fragment's first sample."""

    until_s: float | None = None  # its own audio ends here; the rest is the speech after the cut
    skip_s: float = 0.0  # the word the unit before kept runs to here

    @property
    def active(self) -> bool:
        return self.until_s is not None or self.skip_s > 0


@dataclass(frozen=True)
class Word:
    text: str  # as the tokenizer splits it: a leading space, punctuation attached
    start_s: float
    end_s: float


def own_words(words: list[Word], bounds: Bounds) -> tuple[str, float | None]:
    """The unit's own words, joined, and where the last of them ends (None without ``until_s``): those that
    start before ``until_s`` and whose middle is not before ``skip_s``. Pure."""
    kept = [w for w in words
            if (bounds.until_s is None or w.start_s < bounds.until_s)
            and (bounds.skip_s <= 0 or w.end_s > bounds.skip_s + SKIP_SLACK_S)]
    text = "".join(w.text for w in kept).strip()
    if bounds.until_s is None:
        return text, None
    return text, max((w.end_s for w in kept), default=None)


def skip_after(spoken_until_s: float | None, cut_s: float) -> float:
    """How far into the next unit's audio (which starts at the cut, ``cut_s``) the word the unit before kept
    runs: 0 below :data:`MIN_SKIP_S` or without a report, at most :data:`MAX_SKIP_S`. Pure."""
    if spoken_until_s is None:
        return 0.0
    over = spoken_until_s - cut_s
    return round(min(over, MAX_SKIP_S), 3) if over >= MIN_SKIP_S else 0.0


class LastUnits:
    """What the server remembers of each stream's last unit: its sequence number, its transcript, and how
    far its last word ran past its cut. The unit after it may have been sent before its answer was back
    (it closed before the unit before was decoded), without that unit's words as its context; the server,
    which decodes a stream's fragments in order, fills them in then. Bounded: the last ``most`` streams."""

    def __init__(self, most: int = 1024) -> None:
        self.most = most
        self.last: OrderedDict[str, tuple[int, str, float]] = OrderedDict()
        self.lock = threading.Lock()

    def note(self, stream_id: str, sequence: int, transcript: str, bounds: Bounds,
             spoken_until_s: float | None) -> None:
        over = spoken_until_s - bounds.until_s if bounds.until_s is not None and spoken_until_s is not None else 0.0
        with self.lock:
            self.last[stream_id] = (sequence, transcript, over)
            self.last.move_to_end(stream_id)
            while len(self.last) > self.most:
                self.last.popitem(last=False)

    def before(self, stream_id: str, sequence: int) -> tuple[str, float] | None:
        """The transcript of the unit before ``sequence`` and the skip its last word leaves (0 below
        :data:`MIN_SKIP_S`), if it is the last noted for the stream; else None."""
        with self.lock:
            seq, text, over = self.last.get(stream_id, (-1, "", 0.0))
        return (text, skip_after(over, 0.0)) if seq == sequence - 1 else None
