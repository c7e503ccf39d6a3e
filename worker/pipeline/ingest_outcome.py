"""How an ingest run ends: why its reader stopped, and what that makes of the stream. Pure."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from worker.core.because import Because
from worker.core.models import StreamState


class StopCause(enum.Enum):
    """Why the job stopped its reader. INPUT_ENDED: it did not; the input ended by itself."""

    INPUT_ENDED = "input ended"
    STOPPED_BY_OPERATOR = "stopped by operator"
    SUPERSEDED = "superseded"
    SHUTDOWN = "worker shut down while the stream was live"
    HANDED_OVER = "another worker's reader goes on from a common cut (make before break)"
    DRAIN_TIMEOUT = "input did not end within the drain timeout after the stop hook"
    REGISTRY_UNREACHABLE = "registry unreachable"
    LOST = "the registry lost this stream (Redis restarted without persistence)"
    FATAL = "the input cannot be dubbed"


Stop = Because[StopCause]


@dataclass(frozen=True)
class JobOutcome:
    state: StreamState | None  # None: the job was superseded or a duplicate and wrote nothing
    reason: str
    segments: int


def job_outcome(stop: Stop, returncode: int | None, total: int, seen: int, log_tail: str) -> JobOutcome:
    """What a run's end makes of the stream. ``total``: segments of the stream so far (earlier runs
    too), ``seen``: this run's; ``log_tail``: the end of the reader's log."""
    if stop.cause is StopCause.SUPERSEDED:
        return JobOutcome(None, "superseded by a newer job for this stream", seen)
    if stop.cause not in (StopCause.INPUT_ENDED, StopCause.STOPPED_BY_OPERATOR):
        return JobOutcome(StreamState.FAILED, stop.reason, seen)
    if total == 0:
        if "0:a" in log_tail and "matches no streams" in log_tail:
            return JobOutcome(StreamState.FAILED, "input has no audio track: there is no speech to dub", 0)
        if stop.cause is StopCause.STOPPED_BY_OPERATOR:
            return JobOutcome(StreamState.ENDED, stop.reason, 0)
        return JobOutcome(StreamState.FAILED, f"no media received from the input (ffmpeg exit {returncode}: "
                                              f"{log_tail})", 0)
    if stop.cause is StopCause.STOPPED_BY_OPERATOR:
        return JobOutcome(StreamState.ENDED, stop.reason, seen)
    if returncode not in (0, None, 255):
        return JobOutcome(StreamState.ENDED, f"input ended with a read error: {log_tail}", seen)
    return JobOutcome(StreamState.ENDED, "input ended", seen)
