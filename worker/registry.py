"""The stream registry in Redis: states, timestamps, counters, segments, job leases.

States go starting -> live -> draining -> ended | failed. Every write that belongs to a job is
checked against the record's ``job_id`` inside Redis (Lua), so a stale or duplicate job can never
overwrite a newer one. A running job holds a lease key with a TTL that it refreshes (heartbeat);
:meth:`StreamRegistry.reconcile` turns an active stream whose lease expired into ``failed``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import NamedTuple

import redis

from worker.models import Segment, StreamRecord, StreamState
from worker.naming import validate_stream_id

Clock = Callable[[], float]
PREFIX = "livedub"

_START = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'starting' or state == 'live' then
  return {0, redis.call('HGET', KEYS[1], 'job_id'), 0}
end
if state == 'draining' and redis.call('HGET', KEYS[1], 'stop_requested') ~= '1'
    and redis.call('HGET', KEYS[1], 'publisher_sealed') ~= '1' then
  -- The input dropped and came back while the stream still drains: resume the same job.
  local back = 'starting'
  if redis.call('HEXISTS', KEYS[1], 'live_at') == 1 then back = 'live' end
  redis.call('HDEL', KEYS[1], 'segments_final', 'ended_input_at', 'draining_at', 'reason', 'reader_connected_at')
  redis.call('HSET', KEYS[1], 'state', back, 'updated_at', ARGV[4], 'heartbeat_at', ARGV[4], 'source', ARGV[3])
  local n = redis.call('HINCRBY', KEYS[1], 'resumes', 1)
  return {2, redis.call('HGET', KEYS[1], 'job_id'), n}
end
local gen = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0') + 1
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'stream_id', ARGV[1], 'state', 'starting', 'job_id', ARGV[2],
  'generation', gen, 'source', ARGV[3], 'created_at', ARGV[4], 'updated_at', ARGV[4])
redis.call('PERSIST', KEYS[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return {1, ARGV[2], 0}
"""

# KEYS: record; ARGV: job_id, epoch (resumes when the run began), segments_final ('' for none), now,
# reason, then 'drain' or the final state. Refused when a re-publish resumed the stream meanwhile.
_END_INPUT = """
if redis.call('HGET', KEYS[1], 'job_id') ~= ARGV[1] then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'resumes') or '0') ~= tonumber(ARGV[2]) then return 0 end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'starting' and state ~= 'live' and state ~= 'draining' then return 0 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'segments_final', ARGV[3], 'ended_input_at', ARGV[4]) end
redis.call('HSET', KEYS[1], 'reason', ARGV[5], 'updated_at', ARGV[4])
if ARGV[6] == 'drain' then
  if state ~= 'draining' then redis.call('HSET', KEYS[1], 'state', 'draining') end
  redis.call('HSETNX', KEYS[1], 'draining_at', ARGV[4])
else
  redis.call('HSET', KEYS[1], 'state', ARGV[6])
  redis.call('HSETNX', KEYS[1], 'ended_at', ARGV[4])
end
return 1
"""

# KEYS: record; ARGV: job_id. The publisher put out the last piece and ends: no resume after this.
_SEAL = """
if redis.call('HGET', KEYS[1], 'job_id') ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'segments_final') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'publisher_sealed', '1')
return 1
"""

# KEYS: record; ARGV: job_id, new_state, now, reason, allowed states (comma list), ts field
_TRANSITION = """
if redis.call('HGET', KEYS[1], 'job_id') ~= ARGV[1] then return 0 end
local state = redis.call('HGET', KEYS[1], 'state')
if not string.find(',' .. ARGV[5] .. ',', ',' .. state .. ',', 1, true) then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updated_at', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'reason', ARGV[4]) end
if ARGV[6] ~= '' then redis.call('HSETNX', KEYS[1], ARGV[6], ARGV[3]) end
return 1
"""

# KEYS: lease; ARGV: job_id, ttl_ms. Refresh only our own lease; take it when free.
_LEASE = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# Write fields only into a record that exists (after a Redis restart without persistence, a worker
# must not recreate a half record).
_SET = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# Merge fields into one segment's JSON atomically (tasks update different fields concurrently);
# nested objects (timings_ms) are merged key by key.
_MERGE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local seg = cjson.decode(raw)
for k, v in pairs(cjson.decode(ARGV[2])) do
  if type(v) == 'table' and type(seg[k]) == 'table' then
    for kk, vv in pairs(v) do seg[k][kk] = vv end  -- timings_ms: merge, don't replace
  else
    seg[k] = v
  end
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(seg))
return 1
"""

ACTIVE = "starting,live,draining"


class StartResult(NamedTuple):
    job_id: str
    outcome: str  # created | existing | resumed
    resume: int  # how many times a re-publish resumed this job (for "resumed")

    @property
    def created(self) -> bool:
        return self.outcome == "created"


class StreamRegistry:
    def __init__(self, client: redis.Redis, clock: Clock = time.time, record_ttl_s: int = 86400) -> None:
        self.r = client
        self.clock = clock
        self.record_ttl_s = record_ttl_s
        self._start = client.register_script(_START)
        self._transition = client.register_script(_TRANSITION)
        self._lease = client.register_script(_LEASE)
        self._release = client.register_script(_RELEASE)
        self._merge = client.register_script(_MERGE)
        self._set = client.register_script(_SET)
        self._end_input = client.register_script(_END_INPUT)
        self._seal = client.register_script(_SEAL)

    # keys -----------------------------------------------------------------
    @staticmethod
    def key(stream_id: str, suffix: str = "") -> str:
        validate_stream_id(stream_id)
        return f"{PREFIX}:stream:{stream_id}" + (f":{suffix}" if suffix else "")

    index_key = f"{PREFIX}:streams"

    # lifecycle ------------------------------------------------------------
    def start(self, stream_id: str, source: str) -> StartResult:
        """Register a start. A live or starting stream keeps its job (``existing``); a stream whose input
        dropped and whose output is still draining is resumed by the same job (``resumed``, numbered
        by ``resume``); otherwise a new generation starts (``created``)."""
        job_id = uuid.uuid4().hex
        code, jid, n = self._start(
            keys=[self.key(stream_id), self.key(stream_id, "segments"), self.index_key],
            args=[stream_id, job_id, source, repr(self.clock())],
        )
        return StartResult(_s(jid), ("existing", "created", "resumed")[int(code)], int(n))

    def end_input(self, stream_id: str, job_id: str, epoch: int, segments_final: int | None,
                  reason: str, state: StreamState) -> bool:
        """The ingest run's input ended: record how many segments there are and drain (``DRAINING``:
        the publisher ends the stream) or finish. False when a re-publish resumed the stream since
        the run began (``epoch``), or the stream has another job."""
        mode = "drain" if state is StreamState.DRAINING else state.value
        final = "" if segments_final is None else str(segments_final)
        ok = bool(self._end_input(keys=[self.key(stream_id)],
                                  args=[job_id, epoch, final, repr(self.clock()), reason, mode]))
        if ok and not state.active:
            self.r.expire(self.key(stream_id), self.record_ttl_s)
            self.r.expire(self.key(stream_id, "segments"), self.record_ttl_s)
        return ok

    def seal(self, stream_id: str, job_id: str) -> bool:
        """The publisher is done: after this a re-publish starts a new generation. False when the
        input came back (a resume cleared ``segments_final``)."""
        return bool(self._seal(keys=[self.key(stream_id)], args=[job_id]))

    def resumes(self, stream_id: str) -> int:
        return int(self.r.hget(self.key(stream_id), "resumes") or 0)

    def transition(
        self, stream_id: str, job_id: str, to: StreamState, allowed: str, reason: str = "", ts: str = ""
    ) -> bool:
        ok = self._transition(
            keys=[self.key(stream_id)], args=[job_id, to.value, repr(self.clock()), reason, allowed, ts]
        )
        if ok and not to.active:
            self.r.expire(self.key(stream_id), self.record_ttl_s)
            self.r.expire(self.key(stream_id, "segments"), self.record_ttl_s)
        return bool(ok)

    def mark_live(self, stream_id: str, job_id: str) -> bool:
        return self.transition(stream_id, job_id, StreamState.LIVE, "starting", ts="live_at")

    def mark_draining(self, stream_id: str, job_id: str, reason: str = "") -> bool:
        return self.transition(stream_id, job_id, StreamState.DRAINING, "starting,live", reason, "draining_at")

    def finish(self, stream_id: str, job_id: str, state: StreamState, reason: str = "") -> bool:
        return self.transition(stream_id, job_id, state, ACTIVE, reason, "ended_at")

    def request_stop(self, stream_id: str, job_id: str, reason: str) -> bool:
        self.r.hset(self.key(stream_id), "stop_requested", "1")
        return self.mark_draining(stream_id, job_id, reason)

    def set_fields(self, stream_id: str, **fields: str | float | int) -> bool:
        """Set fields of an existing record; False when there is none."""
        args = [x for k, v in fields.items() for x in (k, str(v))]
        return bool(self._set(keys=[self.key(stream_id)], args=args))

    def record_lost(self, stream_id: str, job_id: str, reason: str) -> None:
        """The registry lost this stream (Redis restarted without persistence): leave a failed record
        with the reason, so the stream does not just vanish."""
        now = repr(self.clock())
        key = self.key(stream_id)
        if self.r.hsetnx(key, "state", StreamState.FAILED.value):
            self.r.hset(key, mapping={"stream_id": stream_id, "job_id": job_id, "created_at": now, "updated_at": now,
                                      "ended_at": now, "reason": reason})
            self.r.zadd(self.index_key, {stream_id: float(now)})
            self.r.expire(key, self.record_ttl_s)

    def reader_connected(self, stream_id: str) -> None:
        if self.r.exists(self.key(stream_id)):
            self.r.hsetnx(self.key(stream_id), "reader_connected_at", repr(self.clock()))

    # leases (heartbeats) --------------------------------------------------
    def lease(self, stream_id: str, holder: str, ttl_s: float, kind: str = "lease") -> bool:
        """Take or refresh a lease on the stream for ``holder``. False when someone else holds it.
        ``kind``: "lease" (the ingest job) or "publisher"."""
        return bool(self._lease(keys=[self.key(stream_id, kind)], args=[holder, int(ttl_s * 1000)]))

    def release(self, stream_id: str, holder: str, kind: str = "lease") -> None:
        self._release(keys=[self.key(stream_id, kind)], args=[holder])

    def lease_owner(self, stream_id: str, kind: str = "lease") -> str | None:
        v = self.r.get(self.key(stream_id, kind))
        return _s(v) if v is not None else None

    def reconcile(self, start_timeout_s: float) -> list[str]:
        """Fail active streams whose job stopped heartbeating. Returns the ids it failed.

        Until the input has ended (``segments_final`` unset) the ingest job must hold its lease; after
        that, the publisher must (it ends the stream once the last piece is out)."""
        failed = []
        now = self.clock()
        for raw in self.r.zrange(self.index_key, 0, -1):
            sid = _s(raw)
            fields = {_s(k): _s(v) for k, v in self.r.hgetall(self.key(sid)).items()}
            if not fields:
                self.r.zrem(self.index_key, sid)
                continue
            reason = self._stale(sid, fields, now, start_timeout_s)
            if reason and self.finish(sid, fields["job_id"], StreamState.FAILED, reason):
                failed.append(sid)
        return failed

    def _stale(self, sid: str, fields: dict[str, str], now: float, start_timeout_s: float) -> str | None:
        if not StreamState(fields["state"]).active:
            return None
        input_done = "segments_final" in fields
        who, kind, beat_field = ("publisher", "publisher", "publisher_heartbeat_at") if input_done \
            else ("ingest job", "lease", "heartbeat_at")
        if self.r.exists(self.key(sid, kind)):
            return None
        if not input_done and self.r.exists(self.key(sid, "publisher")):
            return None  # the publisher watches the ingest job and runs it again
        beat = fields.get(beat_field)
        if beat:
            return f"heartbeat lost: the {who} stopped {now - float(beat):.1f}s ago (worker died?)"
        since = float(fields.get("ended_input_at") or fields["created_at"])
        if now - since > start_timeout_s:
            return f"no {'publish' if input_done else 'ingest'} worker started within {start_timeout_s:.0f}s"
        return None

    # segments -------------------------------------------------------------
    def add_segment(self, stream_id: str, seg: Segment, size_bytes: int) -> None:
        if not self.r.exists(self.key(stream_id)):
            raise KeyError(f"stream {stream_id} is not in the registry")
        pipe = self.r.pipeline()
        pipe.hset(self.key(stream_id, "segments"), str(seg.sequence), seg.model_dump_json())
        pipe.hincrby(self.key(stream_id), "segment_count", 1)
        pipe.hincrbyfloat(self.key(stream_id), "media_seconds", seg.duration_s)
        pipe.hincrby(self.key(stream_id), "media_bytes", size_bytes)
        pipe.execute()

    def update_segment(self, stream_id: str, sequence: int, **fields: object) -> None:
        if not self._merge(keys=[self.key(stream_id, "segments")], args=[str(sequence), json.dumps(fields)]):
            raise KeyError(f"{stream_id} has no segment {sequence}")

    def segment(self, stream_id: str, sequence: int) -> Segment | None:
        raw = self.r.hget(self.key(stream_id, "segments"), str(sequence))
        return Segment.model_validate_json(raw) if raw is not None else None

    def segments(self, stream_id: str) -> list[Segment]:
        raw = self.r.hgetall(self.key(stream_id, "segments"))
        segs = [Segment.model_validate_json(v) for v in raw.values()]
        return sorted(segs, key=lambda s: s.sequence)

    # reads ----------------------------------------------------------------
    def get(self, stream_id: str) -> StreamRecord | None:
        fields = {_s(k): _s(v) for k, v in self.r.hgetall(self.key(stream_id)).items()}
        if not {"state", "job_id", "created_at"} <= set(fields):
            return None  # absent, or a fragment written by something that lost the race with a restart
        return StreamRecord.from_redis(fields, self.segments(stream_id))

    def list(self) -> list[StreamRecord]:
        out = []
        for raw in self.r.zrevrange(self.index_key, 0, 199):
            rec = self.get(_s(raw))
            if rec is not None:
                out.append(rec)
        return out


def _s(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
