"""Which of a stream's segments and units one read of its record returns. Pure.

A stream that runs for hours has thousands of each (about 1,800 pieces and 1,100 units an hour in speech
mode), and the dashboard polls its record every second or two. So a read returns the newest ``limit`` of
each by default; a client that wants them all pages forwards with ``after_segment`` / ``after_unit``.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEFAULT_LIMIT = 500
MAX_LIMIT = 5000


class InvalidPage(ValueError):
    """A page asked for with a value that is not a whole number in range (the API's 400)."""


@dataclass(frozen=True)
class Page:
    """``limit`` of the segments and of the units: the newest, or the first after a sequence."""

    limit: int = DEFAULT_LIMIT
    after_segment: int | None = None
    after_unit: int | None = None


def _whole(args: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = args.get(name)
    if raw is None:
        return None
    if not re.fullmatch(r"-?[0-9]{1,13}", raw):
        raise InvalidPage(f"{name} must be a whole number, not {raw[:20]!r}")
    value = int(raw)
    if not low <= value <= high:
        raise InvalidPage(f"{name} must be between {low} and {high}, not {value}")
    return value


def parse_page(args: Mapping[str, str]) -> Page:
    """A page from query arguments (``limit``, ``after_segment``, ``after_unit``); InvalidPage says why not."""
    limit = _whole(args, "limit", 0, MAX_LIMIT)
    far = 10**12
    return Page(limit=DEFAULT_LIMIT if limit is None else limit,
                after_segment=_whole(args, "after_segment", -1, far),
                after_unit=_whole(args, "after_unit", -1, far))


def pick(sequences: Iterable[int], limit: int, after: int | None) -> list[int]:
    """The sequences one page holds, in order: the first ``limit`` after ``after``, or the newest ``limit``."""
    ordered = sorted(sequences)
    if after is not None:
        first = bisect_right(ordered, after)
        return ordered[first:first + limit]
    return ordered[len(ordered) - limit:] if limit else []
