"""The two lease watchers: the ingest job watches the publisher, and the publisher watches the ingest job.

They run on different pools. Each holds a lease in the registry and writes a heartbeat field; when
the other's lease is gone and its last heartbeat is older than the lease TTL, its worker died, and the
watcher runs it again (the new run goes on where the dead one stopped).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from worker.state.registry import Lease, StreamRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Peer:
    name: str
    lease: Lease
    beat_field: str  # the record field its heartbeat goes to


INGEST = Peer("ingest job", Lease.INGEST, "heartbeat_at")
PUBLISHER = Peer("publisher", Lease.PUBLISHER, "publisher_heartbeat_at")


def peer_dead(lease_owner: str | None, last_beat: float | None, now: float, ttl_s: float) -> bool:
    """A peer is dead when nobody holds its lease and it beat once, longer than a lease TTL ago. Pure."""
    return lease_owner is None and last_beat is not None and now - last_beat > ttl_s


class LeaseWatcher:
    def __init__(self, registry: StreamRegistry, stream_id: str, peer: Peer, ttl_s: float,
                 restart: Callable[[], None], clock: Callable[[], float] = time.time) -> None:
        self.registry, self.stream_id, self.peer, self.ttl_s = registry, stream_id, peer, ttl_s
        self.restart, self.clock = restart, clock

    def check(self, last_beat: float | None) -> bool:
        """Run the peer again if it is dead; True when it did."""
        if not peer_dead(self.registry.lease_owner(self.stream_id, self.peer.lease), last_beat, self.clock(),
                         self.ttl_s):
            return False
        log.warning("%s: the %s stopped heartbeating; running it again", self.stream_id, self.peer.name)
        # A fresh beat gives the new run a lease TTL to start before it is judged dead again.
        self.registry.set_fields(self.stream_id, **{self.peer.beat_field: self.clock()})
        self.restart()
        return True
