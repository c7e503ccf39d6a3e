"""The stream registry in Redis: states, timestamps, counters, segments, job leases.

States go starting -> live -> draining -> ended | failed. Every write that belongs to a job is
checked against the record's ``job_id`` inside Redis (Lua), so a stale or duplicate job can never
overwrite a newer one. A running job holds a lease key with a TTL that it refreshes (heartbeat);
:meth:`StreamRegistry.reconcile` turns an active stream whose lease expired into ``failed``.
"""

from __future__ import annotations

import builtins
import json
import time
import uuid
from collections.abc import Callable

import redis

from worker.core.liveness import input_done, stale_reason
from worker.core.models import StreamRecord, StreamState
from worker.core.naming import validate_stream_id
from worker.core.segments import Segment
from worker.core.units import Unit
from worker.state.metrics import Metrics
from worker.state.records import RECORD_FIELDS, SEGMENT_FIELDS, Lease, StartOutcome, StartResult, _s
from worker.state.registry_lua import END_INPUT, INCR, LEASE, MERGE, RELEASE, SEAL, SET, START, TRANSITION

Clock = Callable[[], float]
PREFIX = "livedub"

ACTIVE = "starting,live,draining"
class StreamRegistry:
    def __init__(self, client: redis.Redis, clock: Clock = time.time, record_ttl_s: int = 86400) -> None:
        self._r = client
        self.clock = clock
        self.record_ttl_s = record_ttl_s
        self.metrics = Metrics(client)
        self._incr = client.register_script(INCR)
        self._start = client.register_script(START)
        self._transition = client.register_script(TRANSITION)
        self._lease = client.register_script(LEASE)
        self._release = client.register_script(RELEASE)
        self._merge = client.register_script(MERGE)
        self._set = client.register_script(SET)
        self._end_input = client.register_script(END_INPUT)
        self._seal = client.register_script(SEAL)

    # keys -----------------------------------------------------------------
    @property
    def client(self) -> redis.Redis:
        return self._r

    @staticmethod
    def key(stream_id: str, suffix: str = "") -> str:
        validate_stream_id(stream_id)
        return f"{PREFIX}:stream:{stream_id}" + (f":{suffix}" if suffix else "")

    index_key = f"{PREFIX}:streams"
    keys_key = f"{PREFIX}:keys"  # stream id -> its StreamConf (created by an operator, until revoked)
    record_prefix = f"{PREFIX}:stream:"

    # lifecycle ------------------------------------------------------------
    def start(self, stream_id: str, source: str, max_active: int = 0) -> StartResult:
        """Register a start. A live or starting stream keeps its job (``existing``); a stream whose input
        dropped and whose output is still draining is resumed by the same job (``resumed``, numbered
        by ``resume``); otherwise a new generation starts (``created``), unless ``max_active`` (> 0)
        streams are active already (``at_limit``): one Lua call, so a burst cannot pass the limit."""
        job_id = uuid.uuid4().hex
        code, jid, n = self._start(
            keys=[self.key(stream_id), self.key(stream_id, "segments"), self.index_key, self.key(stream_id, "units")],
            args=[stream_id, job_id, source, repr(self.clock()), max_active, self.record_prefix],
        )
        outcomes = (StartOutcome.EXISTING, StartOutcome.CREATED, StartOutcome.RESUMED, StartOutcome.AT_LIMIT)
        return StartResult(_s(jid), outcomes[int(code)], int(n))

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
            self._expire(stream_id)
        return ok

    def _expire(self, stream_id: str) -> None:
        self._r.expire(self.key(stream_id), self.record_ttl_s)
        self._r.expire(self.key(stream_id, "segments"), self.record_ttl_s)
        self._r.expire(self.key(stream_id, "units"), self.record_ttl_s)

    def seal(self, stream_id: str, job_id: str) -> bool:
        """The publisher is done: after this a re-publish starts a new generation. False when the
        input came back (a resume cleared ``segments_final``)."""
        return bool(self._seal(keys=[self.key(stream_id)], args=[job_id]))


    def transition(
        self, stream_id: str, job_id: str, to: StreamState, allowed: str, reason: str = "", ts: str = ""
    ) -> bool:
        ok = self._transition(
            keys=[self.key(stream_id)], args=[job_id, to.value, repr(self.clock()), reason, allowed, ts]
        )
        if ok and not to.active:
            self._expire(stream_id)
        return bool(ok)

    def mark_live(self, stream_id: str, job_id: str) -> bool:
        return self.transition(stream_id, job_id, StreamState.LIVE, "starting", ts="live_at")

    def mark_draining(self, stream_id: str, job_id: str, reason: str = "") -> bool:
        return self.transition(stream_id, job_id, StreamState.DRAINING, "starting,live", reason, "draining_at")

    def finish(self, stream_id: str, job_id: str, state: StreamState, reason: str = "") -> bool:
        return self.transition(stream_id, job_id, state, ACTIVE, reason, "ended_at")

    def request_stop(self, stream_id: str, job_id: str, reason: str) -> bool:
        self.set_fields(stream_id, stop_requested="1")
        return self.mark_draining(stream_id, job_id, reason)

    def set_fields(self, stream_id: str, **fields: str | float | int) -> bool:
        """Set fields of an existing record; False when there is none. Only fields that
        :class:`StreamRecord` declares."""
        undeclared = set(fields) - RECORD_FIELDS
        if undeclared:
            raise KeyError(f"StreamRecord declares no field {sorted(undeclared)}")
        if not fields:
            return True
        args = [x for k, v in fields.items() for x in (k, str(v))]
        return bool(self._set(keys=[self.key(stream_id)], args=args))

    def incr(self, stream_id: str, field: str, by: int = 1) -> int | None:
        """Count a record's field atomically (HINCRBY); None when there is no record."""
        if field not in RECORD_FIELDS:
            raise KeyError(f"StreamRecord declares no field {field!r}")
        n = self._incr(keys=[self.key(stream_id)], args=[field, by])
        return None if n is None else int(n)

    def claim(self, stream_id: str, field: str, value: str) -> bool:
        """Set a field only if it is unset (HSETNX) on an existing record: the first caller wins."""
        if field not in RECORD_FIELDS:
            raise KeyError(f"StreamRecord declares no field {field!r}")
        return bool(self._r.exists(self.key(stream_id))) and bool(self._r.hsetnx(self.key(stream_id), field, value))

    def clear_fields(self, stream_id: str, *fields: str) -> None:
        undeclared = set(fields) - RECORD_FIELDS
        if undeclared:
            raise KeyError(f"StreamRecord declares no field {sorted(undeclared)}")
        if fields:
            self._r.hdel(self.key(stream_id), *fields)

    def record_lost(self, stream_id: str, job_id: str, reason: str) -> None:
        """The registry lost this stream (Redis restarted without persistence): leave a failed record
        with the reason, so the stream does not just vanish."""
        now = repr(self.clock())
        key = self.key(stream_id)
        if self._r.hsetnx(key, "state", StreamState.FAILED.value):
            self._r.hset(key, mapping={"stream_id": stream_id, "job_id": job_id, "created_at": now, "updated_at": now,
                                       "ended_at": now, "reason": reason})
            self._r.zadd(self.index_key, {stream_id: float(now)})
            self._r.expire(key, self.record_ttl_s)

    def reader_connected(self, stream_id: str) -> None:
        if self._r.exists(self.key(stream_id)):
            self._r.hsetnx(self.key(stream_id), "reader_connected_at", repr(self.clock()))

    # leases (heartbeats) --------------------------------------------------
    def lease(self, stream_id: str, holder: str, ttl_s: float, kind: Lease = Lease.INGEST) -> bool:
        """Take or refresh a lease on the stream for ``holder``. False when someone else holds it."""
        return bool(self._lease(keys=[self.key(stream_id, kind)], args=[holder, int(ttl_s * 1000)]))

    def release(self, stream_id: str, holder: str, kind: Lease = Lease.INGEST) -> None:
        self._release(keys=[self.key(stream_id, kind)], args=[holder])

    def lease_owner(self, stream_id: str, kind: Lease = Lease.INGEST) -> str | None:
        v = self._r.get(self.key(stream_id, kind))
        return _s(v) if v is not None else None

    def drop_lease(self, stream_id: str, kind: Lease = Lease.INGEST) -> None:
        """What the lease's expiry does, at once (tests, and an operator clearing a dead worker)."""
        self._r.delete(self.key(stream_id, kind))

    def reconcile(self, start_timeout_s: float, only: str | None = None) -> list[str]:
        """Fail active streams (or just ``only``) whose job stopped heartbeating (``liveness.stale_reason``).
        Returns the ids it failed."""
        failed = []
        now = self.clock()
        ids = [only] if only is not None else [_s(raw) for raw in self._r.zrange(self.index_key, 0, -1)]
        for sid in ids:
            fields = {_s(k): _s(v) for k, v in self._r.hgetall(self.key(sid)).items()}
            if not fields:
                self._r.zrem(self.index_key, sid)
                continue
            reason = self._stale(sid, fields, now, start_timeout_s)
            if reason and self.finish(sid, fields["job_id"], StreamState.FAILED, reason):
                failed.append(sid)
        return failed

    def _stale(self, sid: str, fields: dict[str, str], now: float, start_timeout_s: float) -> str | None:
        if not StreamState(fields["state"]).active:  # most of the index: no lease lookups for them
            return None
        pipe = self._r.pipeline(transaction=False)
        pipe.exists(self.key(sid, Lease.INGEST))
        pipe.exists(self.key(sid, Lease.PUBLISHER))
        ingest, publisher = (bool(n) for n in pipe.execute())
        return stale_reason(fields, now, start_timeout_s, owner_lease=publisher if input_done(fields) else ingest,
                            publisher_lease=publisher)

    # segments -------------------------------------------------------------
    def add_segment(self, stream_id: str, seg: Segment, size_bytes: int) -> None:
        if not self._r.exists(self.key(stream_id)):
            raise KeyError(f"stream {stream_id} is not in the registry")
        pipe = self._r.pipeline()
        pipe.hset(self.key(stream_id, "segments"), str(seg.sequence), seg.model_dump_json())
        pipe.hincrby(self.key(stream_id), "segment_count", 1)
        pipe.hincrbyfloat(self.key(stream_id), "media_seconds", seg.duration_s)
        pipe.hincrby(self.key(stream_id), "media_bytes", size_bytes)
        pipe.execute()

    def update_segment(self, stream_id: str, sequence: int, **fields: object) -> None:
        """Merge fields into one segment (timings_ms key by key). Only fields that :class:`Segment`
        declares."""
        undeclared = set(fields) - SEGMENT_FIELDS
        if undeclared:
            raise KeyError(f"Segment declares no field {sorted(undeclared)}")
        if not self._merge(keys=[self.key(stream_id, "segments")], args=[str(sequence), json.dumps(fields)]):
            raise KeyError(f"{stream_id} has no segment {sequence}")

    def merge(self, hash_key: str, sequence: int, fields: dict[str, object]) -> None:
        """Merge fields into one JSON entry of a hash the registry named (segments, units)."""
        if not self._merge(keys=[hash_key], args=[str(sequence), json.dumps(fields)]):
            raise KeyError(f"{hash_key} has no entry {sequence}")

    def segment(self, stream_id: str, sequence: int) -> Segment | None:
        raw = self._r.hget(self.key(stream_id, "segments"), str(sequence))
        return Segment.model_validate_json(raw) if raw is not None else None

    def segments(self, stream_id: str) -> list[Segment]:
        raw = self._r.hgetall(self.key(stream_id, "segments"))
        segs = [Segment.model_validate_json(v) for v in raw.values()]
        return sorted(segs, key=lambda s: s.sequence)

    # reads ----------------------------------------------------------------
    def get(self, stream_id: str, with_segments: bool = True) -> StreamRecord | None:
        """The stream's record; its segments too unless ``with_segments`` is False (a job's view)."""
        fields = {_s(k): _s(v) for k, v in self._r.hgetall(self.key(stream_id)).items()}
        if not {"state", "job_id", "created_at"} <= set(fields):
            return None  # absent, or a fragment written by something that lost the race with a restart
        if not with_segments:
            return StreamRecord.from_redis(fields)
        units = [Unit.model_validate_json(v) for v in self._r.hgetall(self.key(stream_id, "units")).values()]
        return StreamRecord.from_redis(fields, self.segments(stream_id), sorted(units, key=lambda u: u.sequence))

    def list(self, limit: int = 200) -> list[StreamRecord]:
        """The newest streams' records, without their segments, in one round trip."""
        ids = [_s(raw) for raw in self._r.zrevrange(self.index_key, 0, limit - 1)]
        pipe = self._r.pipeline(transaction=False)
        for sid in ids:
            pipe.hgetall(self.key(sid))
        out = []
        for raw in pipe.execute():
            fields = {_s(k): _s(v) for k, v in raw.items()}
            if {"state", "job_id", "created_at"} <= set(fields):
                out.append(StreamRecord.from_redis(fields))
        return out

    def count_by_state(self) -> dict[str, int]:
        """How many streams the index holds in each state."""
        out: dict[str, int] = {}
        for _, state in self._states():
            out[state] = out.get(state, 0) + 1
        return out

    def ttls(self, stream_id: str) -> dict[str, int]:
        """Seconds left on the record and its segments (-1: none set, -2: absent)."""
        return {"record": int(self._r.ttl(self.key(stream_id))),
                "segments": int(self._r.ttl(self.key(stream_id, "segments")))}

    def ping(self) -> bool:
        return bool(self._r.ping())

    def untimed_keys(self) -> builtins.list[str]:
        """Keys with no TTL, except the fixed ones (metrics, the stream index, Celery's and kombu's
        bookkeeping): what would grow with the number of streams if a TTL were missing. For the soak
        and the load test."""
        fixed = {self.index_key, self.keys_key, *self.metrics.keys(), "unacked", "unacked_index"}
        out = []
        for raw in self._r.scan_iter(count=1000):
            key = _s(raw)
            if key not in fixed and not key.startswith("_kombu.binding") and self._r.ttl(key) == -1:
                out.append(key)
        return out

    def _states(self) -> builtins.list[tuple[str, str]]:
        ids = [_s(raw) for raw in self._r.zrange(self.index_key, 0, -1)]
        pipe = self._r.pipeline(transaction=False)
        for sid in ids:
            pipe.hget(self.key(sid), "state")
        return [(sid, _s(st)) for sid, st in zip(ids, pipe.execute(), strict=True) if st is not None]

