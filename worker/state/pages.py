"""A page of a stream's record: the record's fields with some of its segments and units
(:mod:`worker.core.paging` says which), and how many of each it has. What ``GET /v1/streams/<id>`` reads."""

from __future__ import annotations

from worker.core.models import StreamRecord
from worker.core.paging import Page, pick
from worker.core.segments import Segment
from worker.core.units import Unit
from worker.state.records import _s
from worker.state.registry import StreamRegistry


def _entries(registry: StreamRegistry, key: str, limit: int, after: int | None) -> tuple[list[bytes | str], int]:
    """The JSON of one page of a hash keyed by sequence, and how many entries the hash has. Only the
    sequences are read whole; only the page's entries are fetched and parsed."""
    if limit == 0:
        return [], int(registry.client.hlen(key))
    sequences = [int(_s(k)) for k in registry.client.hkeys(key)]
    chosen = pick(sequences, limit, after)
    raws = registry.client.hmget(key, [str(i) for i in chosen]) if chosen else []
    return [r for r in raws if r is not None], len(sequences)


def read_page(registry: StreamRegistry, stream_id: str, page: Page) -> StreamRecord | None:
    """The stream's record with one page of its segments and of its units, in order; None if unknown."""
    rec = registry.get(stream_id, with_segments=False)
    if rec is None:
        return None
    segs, seg_total = _entries(registry, registry.key(stream_id, "segments"), page.limit, page.after_segment)
    units, unit_total = _entries(registry, registry.key(stream_id, "units"), page.limit, page.after_unit)
    return rec.model_copy(update={
        "segments": [Segment.model_validate_json(r) for r in segs],
        "units": [Unit.model_validate_json(r) for r in units],
        "segments_total": seg_total, "units_total": unit_total})
