"""Per-stream session state and the fair work queue. Pure: no sockets, no clocks."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from worker.core.stats import percentile
from worker.sts.protocol import Backpressure, FragmentProcessed, Statistics, StreamConfig


@dataclass
class StreamSession:
    sid: str
    stream_id: str
    session_id: str
    config: StreamConfig
    max_inflight: int
    timeout_ms: int
    paused: bool = False
    ending: bool = False
    pending: list[int] = field(default_factory=list)  # heap of accepted, not yet emitted sequence numbers
    done: dict[int, FragmentProcessed] = field(default_factory=dict)
    total_fragments: int = 0
    total_duration_ms: float = 0.0
    throttled: bool = False  # a slow_down or pause went out; a "none" follows once the load falls
    times_ms: list[float] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"success": 0, "partial": 0, "failed": 0})

    @property
    def inflight(self) -> int:
        return len(self.pending)

    def accept(self, sequence: int, duration_ms: float) -> None:
        if sequence in self.pending:
            raise ValueError(f"sequence_number {sequence} is already in flight")
        heapq.heappush(self.pending, sequence)
        self.total_fragments += 1
        self.total_duration_ms += duration_ms

    def complete(self, result: FragmentProcessed) -> list[FragmentProcessed]:
        """Record a finished fragment; return what may now go out, in sequence_number order."""
        self.done[result.sequence_number] = result
        self.counts[result.status] += 1
        self.times_ms.append(result.processing_time_ms)
        ready = []
        while self.pending and self.pending[0] in self.done:
            ready.append(self.done.pop(heapq.heappop(self.pending)))
        return ready

    def statistics(self) -> Statistics:
        times = sorted(self.times_ms)
        return Statistics(
            total_fragments=self.total_fragments, success_count=self.counts["success"],
            partial_count=self.counts["partial"],
            failed_count=self.counts["failed"], avg_processing_time_ms=sum(times) / len(times) if times else 0.0,
            p95_processing_time_ms=percentile(times, 95),
        )


def backpressure(stream_id: str, inflight: int, max_inflight: int, queue_depth: int,
                 chunk_ms: int) -> Backpressure | None:
    """None under ``max_inflight``; slow down above it; pause at twice it (where fragments are refused)."""
    if inflight <= max_inflight:
        return None
    if inflight >= 2 * max_inflight:
        return Backpressure(stream_id=stream_id, severity="high", current_inflight=inflight,
                            queue_depth=queue_depth, action="pause", recommended_delay_ms=chunk_ms)
    return Backpressure(stream_id=stream_id, severity="medium", current_inflight=inflight,
                        queue_depth=queue_depth, action="slow_down", recommended_delay_ms=chunk_ms // 2)


def relief(stream_id: str, inflight: int, queue_depth: int) -> Backpressure:
    """The load fell back under ``max_inflight`` after a slow_down or pause: the client may go on."""
    return Backpressure(stream_id=stream_id, severity="low", current_inflight=inflight, queue_depth=queue_depth,
                        action="none", recommended_delay_ms=0)


class QueueFull(Exception):
    pass


class FairQueue:
    """A work queue shared by all streams, bounded in items and in bytes, served round-robin so that one
    stream's flood cannot starve the others. Paused streams are skipped.

    With ``due`` (an item's time its client stops waiting), a stream whose next item is due within
    ``urgent_s`` goes before the streams' turns, the one due first before the others: on one engine thread,
    a fragment that has no slack left is not made late by one that has (measured on three streams in
    speech mode: a unit cut at its maximum length, with no slack by construction, fell back when it waited
    behind another stream's unit that closed in a pause). Each stream's items stay in their order.

    A stream may go before the turns only once as many items of other streams were served since its own
    last one as there are other streams waiting: a client that calls every fragment urgent (a small
    ``budget_ms``) gets its turn and no more, while a stream with an urgent item now and then still jumps."""

    def __init__(self, capacity: int, capacity_bytes: int = 0, due: Callable[[Any], float] | None = None,
                 urgent_s: float = 0.0) -> None:
        self.capacity, self.capacity_bytes = capacity, capacity_bytes  # 0 bytes: no byte bound
        self.due, self.urgent_s = due, urgent_s
        self.queues: dict[Hashable, deque[tuple[Any, int]]] = {}
        self.order: deque[Hashable] = deque()
        self.paused: set[Hashable] = set()
        self.served = 0  # items popped so far
        self.last_served: dict[Hashable, int] = {}  # a stream's last item's number among those popped
        self.size = 0
        self.bytes = 0

    def put(self, key: Hashable, item: Any, nbytes: int = 0) -> int:
        """Queue an item of ``nbytes``; returns its position among all queued work. Raises QueueFull."""
        if self.size >= self.capacity:
            raise QueueFull(f"the work queue is full ({self.capacity})")
        if self.capacity_bytes and self.bytes + nbytes > self.capacity_bytes:
            raise QueueFull(f"the work queue is full ({self.capacity_bytes // 2**20} MiB of audio)")
        if key not in self.queues:
            self.queues[key] = deque()
            self.order.append(key)
        self.queues[key].append((item, nbytes))
        self.size += 1
        self.bytes += nbytes
        return self.size - 1

    def ready(self) -> bool:
        return any(q and k not in self.paused for k, q in self.queues.items())

    def pop(self, now: float = 0.0) -> tuple[Hashable, Any] | None:
        """The next item: the most urgent stream's (see the class), else the next stream's in turn. That
        stream goes to the back of the turns."""
        turns = [k for k in self.order if self.queues.get(k) and k not in self.paused]
        if not turns:
            return None
        key = turns[0]
        others = len(turns) - 1
        may_jump = [k for k in turns if k not in self.last_served  # others served since k's last >= others
                    or self.served - self.last_served[k] - 1 >= others]
        if self.due is not None and may_jump:
            due = self.due
            first = min(may_jump, key=lambda k: due(self.queues[k][0][0]))  # ties: in turn
            if due(self.queues[first][0][0]) - now <= self.urgent_s:
                key = first
        self.last_served[key] = self.served
        self.served += 1
        self.order.remove(key)
        self.order.append(key)
        item, nbytes = self.queues[key].popleft()
        self.size -= 1
        self.bytes -= nbytes
        return key, item

    def drop(self, key: Hashable) -> list[Any]:
        items = list(self.queues.pop(key, ()))
        if key in self.order:
            self.order.remove(key)
        self.paused.discard(key)
        self.last_served.pop(key, None)
        self.size -= len(items)
        self.bytes -= sum(n for _, n in items)
        return [item for item, _ in items]
