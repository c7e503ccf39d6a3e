"""When the registry's reconcile fails an active stream: which job must be alive, and for how long it may
be silent or not yet started."""

import pytest

from worker.core.liveness import stale_reason

NOW = 1000.0


def fields(state="live", **extra):
    return {"state": state, "created_at": "900.0", **{k: str(v) for k, v in extra.items()}}


def reason(f, owner=False, publisher=False, timeout=30.0):
    return stale_reason(f, NOW, timeout, owner_lease=owner, publisher_lease=publisher)


@pytest.mark.parametrize("state", ["ended", "failed"])
def test_a_stream_that_is_over_is_never_stale(state):
    assert reason(fields(state)) is None


def test_a_held_lease_keeps_the_stream_alive():
    assert reason(fields(heartbeat_at=990), owner=True) is None


def test_a_silent_ingest_job_is_dead_unless_the_publisher_lives_to_run_it_again():
    f = fields(heartbeat_at=990)
    assert reason(f, publisher=True) is None
    assert reason(f) == "heartbeat lost: the ingest job stopped 10.0s ago (worker died?)"


def test_once_the_input_ended_the_publisher_must_be_alive():
    f = fields(segments_final=12, publisher_heartbeat_at=995, heartbeat_at=900)
    assert reason(f) == "heartbeat lost: the publisher stopped 5.0s ago (worker died?)"
    assert reason(f, publisher=True) == reason(f)  # publisher_lease is about watching ingest; owner_lease says it
    assert reason(f, owner=True) is None


def test_a_handover_waits_for_a_taker_until_the_start_timeout():
    assert reason(fields(heartbeat_at=960, handover_at=980)) is None
    assert reason(fields(heartbeat_at=960, handover_at=960)) == (
        "no ingest worker took the stream over within 30s of its worker shutting down")


def test_a_job_that_never_started_is_failed_after_the_start_timeout():
    assert reason(fields("starting", created_at=980)) is None
    assert reason(fields("starting", created_at=960)) == "no ingest worker started within 30s"
    assert reason(fields(segments_final=3, ended_input_at=960)) == "no publish worker started within 30s"
    assert reason(fields(segments_final=3, ended_input_at=990)) is None
