"""Benchmark: a sentence cut between two words, translated as speech mode translates its two units.

Every cut between two words of bench.speech's news sentences and of the LibriVox clips' sentences (the
script, not audio: the ASR is left out). The beginning is translated alone, as its unit was dubbed; the
rest with the beginning as context, the beginning's translation taken off the front of the whole's
(``worker.sts.engines.translate_in_context``), allowing its last ``redo`` words to differ from the
whole's (``worker.sts.context.strip_prefix``); ``redo`` 0, the exact match only, is the baseline (the
behaviour before 2026-12-07, but for day and month names, which keep their capital in both). Figures per
corpus and ``redo``: chrF (sacrebleu) of the joined translations against the same MT on the whole
sentences, how many rests were taken off the whole (``exact``: the beginning's translation matched word
for word; ``redone``: all but its last ``redo`` words) and how many were translated alone, and the words
said twice in meaning (the redone ones).

    python -m bench.context [--redo 0 1 2 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import json
from typing import Any

import sacrebleu

from bench.speech import NEWS, librivox_script
from worker.sts.apertium import Translator
from worker.sts.context import strip_prefix, word_list
from worker.sts.engines import MtRun, beginning_and_whole, translate, translate_in_context


def capitalised(text: str) -> str:
    """With a capital, as Whisper begins a unit."""
    return text[:1].upper() + text[1:]


def cuts(sentence: str) -> list[tuple[str, str]]:
    """The sentence cut after each word but the first and the last two: (beginning, rest)."""
    words = sentence.split()
    return [(" ".join(words[:k]), capitalised(" ".join(words[k:]))) for k in range(2, len(words) - 1)]


def run(sentences: list[str], redo: int, mt: MtRun) -> dict[str, Any]:
    hyps, refs = [], []
    counts = {"exact": 0, "redone": 0, "alone": 0, "words_redone": 0}
    for sentence in sentences:
        whole = translate(sentence, "en", "es", mt)
        for start, rest in cuts(sentence):
            said = translate(start, "en", "es", mt)  # the beginning's unit, dubbed alone
            after = translate_in_context(rest, start, "en", "es", mt, redo)
            both = beginning_and_whole(rest, start, "en", "es", mt)  # the same call: answered from the cache
            if both is not None and strip_prefix(*both, 0) is not None:
                counts["exact"] += 1
            elif both is not None and strip_prefix(*both, redo) is not None:
                counts["redone"] += 1
                first, joined_whole = both  # the beginning's words less those the whole shares with it
                counts["words_redone"] += len(word_list(first)) - (len(word_list(joined_whole)) - len(word_list(after)))
            else:
                counts["alone"] += 1
            hyps.append(f"{said} {after}")
            refs.append(whole)
    return {"cuts": len(hyps), **counts, "chrf": round(sacrebleu.corpus_chrf(hyps, [refs]).score / 100, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redo", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    corpora = {"news": NEWS}
    if (libri := librivox_script()) is not None:
        corpora["librivox"] = [capitalised(s) for s in libri]
    translator = Translator()
    mt: MtRun = functools.lru_cache(maxsize=None)(translator.run)  # each text once, whatever the redo
    out: dict[str, dict[str, Any]] = {}
    try:
        for name, sentences in corpora.items():
            for redo in args.redo:
                out[f"{name}/redo {redo}"] = row = run(sentences, redo, mt)
                print(f"{name:9s} redo {redo}: {json.dumps(row)}", flush=True)
    finally:
        translator.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
