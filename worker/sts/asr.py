"""Whisper on one unit's audio, its encoder shown a window sized to the audio instead of 30 s.

faster-whisper pads every input to Whisper's 30 s window, and the encoder's cost follows the window,
not the speech: a 3 s unit cost 0.7 CPU-s on two cores, 0.37 s of it in the encoder. CTranslate2's
Whisper encodes any even number of mel frames up to 3000, so a unit is decoded here with the audio and
a margin of silence, at least :data:`MIN_WINDOW_S` (shorter windows loop: a 3 s unit with 0.5 s of
margin came back as the same phrase repeated). A decode that still looks looped (it reached its token
limit, or its text compresses like a repetition) is done again on the same window with timestamps, and
only what starts before the speech ends is kept (counting speech, "7, 8, ..., 12", looped as "12, 12, 12"
without them; the retry cost 0.3 s on two cores); one that loops again goes to faster-whisper on the full
window (1-1.5 s).
The voice activity filter is faster-whisper's own (Silero), as ``transcribe(vad_filter=True)`` runs it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from worker.sts.bounds import Bounds, Word, own_words

RATE = 16000
HOP = 160  # samples a mel frame
FULL_FRAMES = 3000  # Whisper's 30 s window
MIN_WINDOW_S = 15.0
MARGIN_S = 3.0
MAX_TOKENS = 224  # half the decoder's context, as faster-whisper allows
LOOP_RATIO = 2.4  # faster-whisper's compression_ratio_threshold
TIME_PRECISION = 0.02  # seconds a timestamp token
MAX_INITIAL_TIMESTAMP = 50  # the first segment starts in the first second (faster-whisper's default)
TIMESTAMP_ROOM = 20  # tokens for timestamps: two a segment
NO_SPEECH, LOW_LOGPROB = 0.6, -1.0  # faster-whisper's no_speech_threshold, log_prob_threshold


def window_frames(samples: int, margin_s: float = MARGIN_S, min_s: float = MIN_WINDOW_S) -> int:
    """Mel frames the encoder sees for ``samples`` of 16 kHz audio: the audio and ``margin_s`` of silence,
    at least ``min_s``, at most the full window; even (the encoder's convolution has a stride of 2)."""
    n = min(max(math.ceil(samples / HOP) + round(margin_s * 100), round(min_s * 100)), FULL_FRAMES)
    return n + n % 2


def token_limit(samples: int) -> int:
    """The most tokens a decode of ``samples`` may produce: ten a second of audio and twenty more (speech
    runs at three to five), at most :data:`MAX_TOKENS`. A decode that reaches it is looping."""
    return min(MAX_TOKENS, 20 + 10 * math.ceil(samples / RATE))


def text_before(tokens: list[int], timestamp_begin: int, eot: int, end_s: float) -> list[int]:
    """The text tokens of a timestamped decode from segments that start before ``end_s``: what Whisper says
    after that is said over the window's silence. A segment's start is the last timestamp before its text."""
    start, kept = 0.0, []
    for token in tokens:
        if token >= timestamp_begin:
            start = (token - timestamp_begin) * TIME_PRECISION
        elif token < eot and start < end_s:
            kept.append(token)
    return kept


def looks_looped(text: str, tokens: int, limit: int) -> bool:
    from faster_whisper.transcribe import get_compression_ratio

    return tokens >= limit or (bool(text) and get_compression_ratio(text) > LOOP_RATIO)


def is_silence(no_speech_prob: float, avg_logprob: float) -> bool:
    """faster-whisper's rule for a window with no speech in it."""
    return no_speech_prob > NO_SPEECH and avg_logprob < LOW_LOGPROB


@dataclass
class AsrCounts:
    windowed: int = 0  # decoded on a window sized to the audio
    timestamped: int = 0  # decoded again on that window with timestamps (the first decode looped)
    full: int = 0  # decoded on the full window (long audio, or a windowed decode that looped)
    silent: int = 0  # no speech found
    wide: int = 0  # of those with speech, decoded with a beam over 1 (worker/sts/beam.py)


class UnitAsr:
    """Transcribes one unit: voice activity filter, then a decode on a window sized to what is left."""

    def __init__(self, model: Any, beam_size: int = 1) -> None:
        self.model, self.beam_size = model, beam_size  # a faster_whisper.WhisperModel
        self.counts = AsrCounts()
        self._lock = threading.Lock()

    def _count(self, field: str) -> None:
        with self._lock:
            setattr(self.counts, field, getattr(self.counts, field) + 1)

    def transcribe(self, pcm: Any, language: str, prompt: str | None = None, beam_size: int | None = None) -> str:
        """``pcm``: mono float32 16 kHz samples (numpy); ``beam_size``: this decode's, else the configured."""
        return self.hear(pcm, language, prompt, beam_size)[0]

    def hear(self, pcm: Any, language: str, prompt: str | None = None, beam_size: int | None = None,
             bounds: Bounds | None = None) -> tuple[str, float | None]:
        """The transcript, and with ``bounds`` (worker/sts/bounds.py) only the unit's own words, decoded with
        their times, and where the last of them ends (seconds in ``pcm``)."""
        import numpy as np
        from faster_whisper.vad import SpeechTimestampsMap, VadOptions, collect_chunks, get_speech_timestamps

        chunks = get_speech_timestamps(pcm, VadOptions())
        speech = np.concatenate(collect_chunks(pcm, chunks)[0]) if chunks else pcm[:0]
        if speech.size == 0:
            self._count("silent")
            return "", None
        beam = beam_size or self.beam_size
        if beam > 1:
            self._count("wide")
        timed = bounds is not None and bounds.active
        words: list[Word] | None = None
        if window_frames(speech.size) < FULL_FRAMES:
            # A plain decode that loops is done again with timestamps on the same window, which ends the text
            # where the speech ends (0.3 s for 6 s of speech on two cores; the full window took 1-1.5 s).
            for timestamps in (False, True):
                got = self._windowed(speech, language, prompt, beam, timestamps, timed)
                if got is not None:
                    text, words = got
                    self._count(("timestamped" if timestamps else "windowed") if text else "silent")
                    break
        if words is None:
            self._count("full")
            segments, _ = self.model.transcribe(speech, language=language, beam_size=beam, vad_filter=False,
                                                temperature=0.0, condition_on_previous_text=False,
                                                initial_prompt=prompt or None, word_timestamps=timed)
            segments = list(segments)
            text = " ".join(s.text.strip() for s in segments).strip()
            words = [Word(w.word, w.start, w.end) for s in segments for w in (s.words or [])]
        if not timed or not text:
            return text, None
        assert bounds is not None
        back = SpeechTimestampsMap(chunks, RATE)  # the filter's cuts taken out of the words' times
        return own_words([Word(w.text, back.get_original_time(w.start_s), back.get_original_time(w.end_s, is_end=True))
                          for w in words], bounds)

    def _windowed(self, speech: Any, language: str, prompt: str | None, beam: int, timestamps: bool = False,
                  timed: bool = False) -> tuple[str, list[Word]] | None:
        """The decode on a window sized to ``speech``, and with ``timed`` its words' times (the aligner on
        the same encoding); None when it looks looped. With ``timestamps``, the text of segments that start
        after the speech is dropped."""
        import ctranslate2
        import numpy as np
        from faster_whisper.tokenizer import Tokenizer

        model = self.model
        frames = window_frames(speech.size)
        features = model.feature_extractor(speech)[:, :frames]
        features = np.pad(features, ((0, 0), (0, frames - features.shape[1])))
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                              language=language if model.model.is_multilingual else "en")
        previous = tokenizer.encode(" " + prompt.strip()) if prompt and prompt.strip() else []
        prompt_ids = model.get_prompt(tokenizer, previous, without_timestamps=not timestamps)
        limit = token_limit(speech.size)
        room = 2 * limit + (TIMESTAMP_ROOM if timestamps else 0)
        # CTranslate2 counts part of the prompt in max_length (with a two-token prompt, max_length 10 gave
        # five tokens; with fourteen, 22 gave nine): room for twice the limit lets a looping decode reach it.
        encoded = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], dtype=np.float32))
        if timed:
            encoded = model.model.encode(encoded)  # once, for the decode and the aligner
        result = model.model.generate(
            encoded, [prompt_ids], beam_size=beam, return_scores=True,
            max_length=min(len(prompt_ids) + room + 1, model.max_length), return_no_speech_prob=True,
            suppress_blank=True, suppress_tokens=[-1], max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP)[0]
        decoded = result.sequences_ids[0]
        if is_silence(result.no_speech_prob, result.scores[0] * len(decoded) / (len(decoded) + 1)):
            return "", []
        tokens = text_before(decoded, tokenizer.timestamp_begin, tokenizer.eot, speech.size / RATE) \
            if timestamps else decoded
        text = tokenizer.decode(tokens).strip()
        if looks_looped(text, len(tokens), limit):
            return None
        if not timed or not text:
            return text, []
        aligned = model.find_alignment(tokenizer, [[t for t in tokens if t < tokenizer.eot]], encoded,
                                       speech.size // HOP)[0]
        return text, [Word(w["word"], float(w["start"]), float(w["end"])) for w in aligned]
