"""When an active stream's job counts as dead: pure, from its record's fields and which leases exist.

Until the input has ended (``segments_final`` unset) the ingest job must hold its lease; after that,
the publisher must (it ends the stream once the last piece is out)."""

from __future__ import annotations

from collections.abc import Mapping

from worker.core.models import StreamState


def input_done(fields: Mapping[str, str]) -> bool:
    """The input has ended: the publisher, not the ingest job, is the one that must be alive."""
    return "segments_final" in fields


def stale_reason(fields: Mapping[str, str], now: float, start_timeout_s: float, *, owner_lease: bool,
                 publisher_lease: bool) -> str | None:
    """Why the stream should be failed, or None while it is alive or may still start.

    ``owner_lease``: the lease of the job that must be alive (ingest, or the publisher once the input
    has ended) exists; ``publisher_lease``: the publisher's exists (it watches the ingest job and runs
    it again, so while it lives a silent ingest job is not a dead stream)."""
    if not StreamState(fields["state"]).active or owner_lease:
        return None
    done = input_done(fields)
    if not done and publisher_lease:
        return None
    handover = fields.get("handover_at")
    if handover and not done:  # its worker shut down and queued the job again: wait for a taker
        if now - float(handover) > start_timeout_s:
            return (f"no ingest worker took the stream over within {start_timeout_s:.0f}s of its worker "
                    "shutting down")
        return None
    who, beat_field = ("publisher", "publisher_heartbeat_at") if done else ("ingest job", "heartbeat_at")
    beat = fields.get(beat_field)
    if beat:
        return f"heartbeat lost: the {who} stopped {now - float(beat):.1f}s ago (worker died?)"
    since = float(fields.get("ended_input_at") or fields["created_at"])
    if now - since > start_timeout_s:
        return f"no {'publish' if done else 'ingest'} worker started within {start_timeout_s:.0f}s"
    return None
