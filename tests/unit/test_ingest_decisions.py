"""The ingest job's decisions: what a run's end makes of the stream, and when a peer is dead."""

import pytest

from worker.core.models import StreamState
from worker.pipeline.ingest_outcome import Stop, StopCause, job_outcome
from worker.pipeline.supervisor import peer_dead

NO_AUDIO = "Stream map '0:a' matches no streams."


def test_an_input_that_ends_with_segments_ends_the_stream():
    out = job_outcome(Stop(StopCause.INPUT_ENDED), 0, total=5, seen=5, log_tail="")
    assert (out.state, out.reason, out.segments) == (StreamState.ENDED, "input ended", 5)


def test_a_read_error_after_segments_still_ends_the_stream_and_says_so():
    out = job_outcome(Stop(StopCause.INPUT_ENDED), 1, total=5, seen=5, log_tail="Connection reset")
    assert out.state is StreamState.ENDED and out.reason == "input ended with a read error: Connection reset"


def test_no_media_at_all_fails_with_the_readers_words():
    out = job_outcome(Stop(StopCause.INPUT_ENDED), 1, total=0, seen=0, log_tail="Input/output error")
    assert out.state is StreamState.FAILED and "no media received" in out.reason and "Input/output" in out.reason


def test_an_input_without_audio_fails_as_such_even_when_stopped():
    for cause in (StopCause.INPUT_ENDED, StopCause.STOPPED_BY_OPERATOR):
        out = job_outcome(Stop(cause), 1, total=0, seen=0, log_tail=NO_AUDIO)
        assert out.state is StreamState.FAILED and out.reason.startswith("input has no audio track")


def test_an_operator_stop_ends_the_stream_with_or_without_segments():
    for total in (0, 3):
        out = job_outcome(Stop(StopCause.STOPPED_BY_OPERATOR), 255, total=total, seen=total, log_tail="")
        assert (out.state, out.reason) == (StreamState.ENDED, "stopped by operator")


@pytest.mark.parametrize("stop", [
    Stop(StopCause.SHUTDOWN),
    Stop(StopCause.DRAIN_TIMEOUT),
    Stop(StopCause.REGISTRY_UNREACHABLE, "registry unreachable for 31s"),
    Stop(StopCause.LOST),
    Stop(StopCause.FATAL, "input has no video track livedub can read"),
])
def test_the_job_gives_up_with_a_failed_state_and_the_reason(stop):
    out = job_outcome(stop, None, total=4, seen=2, log_tail="")
    assert (out.state, out.reason, out.segments) == (StreamState.FAILED, stop.reason, 2)


def test_a_superseded_run_writes_nothing():
    out = job_outcome(Stop(StopCause.SUPERSEDED), None, total=4, seen=2, log_tail="")
    assert out.state is None


def test_a_peer_is_dead_only_without_its_lease_after_a_lease_ttl_of_silence():
    assert peer_dead(None, last_beat=100.0, now=110.1, ttl_s=10.0)
    assert not peer_dead(None, last_beat=100.0, now=110.0, ttl_s=10.0)
    assert not peer_dead("pub-j.1234", last_beat=100.0, now=200.0, ttl_s=10.0)  # its lease is held
    assert not peer_dead(None, last_beat=None, now=200.0, ttl_s=10.0)  # it never started
