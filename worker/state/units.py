"""Speech units in Redis (``livedub:stream:<id>:units``) and the timeline's seal: which pieces have had
their audio made, so no dub is placed where it would no longer be heard.

Placing a dub and sealing a piece are each one Lua call: a dub is placed only at or after the sealed
point (``sealed_until_s`` on the stream's record); sealing moves that point and marks the piece. So a
piece's remux, which reads the placed dubs after its seal, sees every dub that lands in it.
"""

from __future__ import annotations

import enum
import json

from worker.core.segments import Reason, SegmentStatus
from worker.core.units import Unit
from worker.state.registry import StreamRegistry
from worker.state.registry_lua import APPLY

UNIT_FIELDS = frozenset(Unit.model_fields)


class PlaceResult(enum.Enum):
    PLACED = "placed"
    SEALED = "sealed"  # the timeline is sealed past the start asked for
    SETTLED = "settled"  # the unit has an outcome already (or is gone)

# KEYS: record, units; ARGV: sequence, start (s; '' to settle without placing), fields JSON. A unit is placed
# or settled once; a placement is committed only at or after the seal.
PLACE = APPLY + """
if ARGV[2] ~= '' then
  local sealed = tonumber(redis.call('HGET', KEYS[1], 'sealed_until_s') or '-1')
  if sealed > tonumber(ARGV[2]) + 0.000001 then return 0 end
end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return -1 end
local unit = cjson.decode(raw)
if unit['status'] ~= 'extracted' then return -2 end
apply(unit, cjson.decode(ARGV[3]))
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(unit))
return 1
"""

# KEYS: record, segments; ARGV: sequence, end (s), wall time. Mark the piece sealed, move the seal forward.
SEAL = """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return -1 end
local seg = cjson.decode(raw)
if seg['sealed_at'] ~= nil and seg['sealed_at'] ~= cjson.null then return 0 end
seg['sealed_at'] = tonumber(ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(seg))
local sealed = tonumber(redis.call('HGET', KEYS[1], 'sealed_until_s') or '-1')
if tonumber(ARGV[2]) > sealed then redis.call('HSET', KEYS[1], 'sealed_until_s', ARGV[2]) end
return 1
"""


class UnitBook:
    """The units of every stream, and the seal of its timeline. Key names come from the registry."""

    def __init__(self, registry: StreamRegistry) -> None:
        self.registry = registry
        self._r = registry.client
        self._place = self._r.register_script(PLACE)
        self._seal = self._r.register_script(SEAL)

    def _key(self, stream_id: str) -> str:
        return self.registry.key(stream_id, "units")

    def add(self, stream_id: str, unit: Unit) -> None:
        pipe = self._r.pipeline()
        pipe.hset(self._key(stream_id), str(unit.sequence), unit.model_dump_json())
        pipe.expire(self._key(stream_id), self.registry.record_ttl_s)
        pipe.execute()

    def update(self, stream_id: str, sequence: int, **fields: object) -> None:
        self._check(fields)
        self.registry.merge(self._key(stream_id), sequence, fields)

    def settle(self, stream_id: str, sequence: int, status: SegmentStatus, reason: Reason | None = None,
               **fields: object) -> bool:
        """The unit's outcome, once (counted by whoever settles it). False: it was settled already."""
        if not status.terminal:
            raise ValueError(f"{status} is not an outcome")
        fields = {**fields, "status": status.value, **(reason.fields() if reason else {})}
        self._check(fields)
        done = self._place(keys=[self.registry.key(stream_id), self._key(stream_id)],
                           args=[str(sequence), "", json.dumps(fields)]) == 1
        if done:
            self.registry.metrics.count("livedub_units_total", status=status.value,
                                        reason=reason.code.value if reason else "none")
        return done

    def place(self, stream_id: str, sequence: int, start_s: float, **fields: object) -> PlaceResult:
        """Record a dub placed at ``start_s`` and settle the unit as processed, unless the timeline is
        sealed past ``start_s`` (SEALED: place it later, or let it fall back) or the unit is settled."""
        fields = {**fields, "status": SegmentStatus.PROCESSED.value}
        self._check(fields)
        code = int(self._place(keys=[self.registry.key(stream_id), self._key(stream_id)],
                               args=[str(sequence), repr(start_s), json.dumps(fields)]))
        if code == 1:
            self.registry.metrics.count("livedub_units_total", status="processed", reason="none")
        return {1: PlaceResult.PLACED, 0: PlaceResult.SEALED}.get(code, PlaceResult.SETTLED)

    def seal(self, stream_id: str, sequence: int, end_s: float) -> bool:
        """Seal piece ``sequence`` (its audio is made from what is placed now). False: sealed already."""
        return self._seal(keys=[self.registry.key(stream_id), self.registry.key(stream_id, "segments")],
                          args=[str(sequence), repr(end_s), repr(self.registry.clock())]) == 1

    def sealed_until(self, stream_id: str) -> float:
        raw = self._r.hget(self.registry.key(stream_id), "sealed_until_s")
        return float(raw) if raw is not None else -1.0

    def get(self, stream_id: str, sequence: int) -> Unit | None:
        raw = self._r.hget(self._key(stream_id), str(sequence))
        return Unit.model_validate_json(raw) if raw is not None else None

    def range(self, stream_id: str, first: int, last: int) -> list[Unit]:
        """Units ``first`` to ``last`` (inclusive) that exist, in order."""
        if last < first:
            return []
        raws = self._r.hmget(self._key(stream_id), [str(i) for i in range(first, last + 1)])
        return [Unit.model_validate_json(r) for r in raws if r is not None]

    def all(self, stream_id: str) -> list[Unit]:
        raw = self._r.hgetall(self._key(stream_id))
        return sorted((Unit.model_validate_json(v) for v in raw.values()), key=lambda u: u.sequence)

    @staticmethod
    def _check(fields: dict[str, object]) -> None:
        if undeclared := set(fields) - UNIT_FIELDS:
            raise KeyError(f"Unit declares no field {sorted(undeclared)}")
