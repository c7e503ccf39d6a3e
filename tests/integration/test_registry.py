"""The registry against a real Redis, with an injected clock."""

import pytest
import redis

from worker.models import Segment, StreamState
from worker.registry import StreamRegistry

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def reg(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    clock = Clock()
    r = StreamRegistry(client, clock=clock, record_ttl_s=60)
    r.test_clock = clock  # type: ignore[attr-defined]
    return r


def test_start_is_idempotent_while_active(reg):
    job, created = reg.start("s", "test")
    assert created
    assert reg.start("s", "test") == (job, False)
    assert reg.mark_live("s", job)
    assert reg.start("s", "test") == (job, False)
    rec = reg.get("s")
    assert rec.state is StreamState.LIVE and rec.live_at == 1000.0 and rec.generation == 1


def test_a_new_publish_after_the_end_is_a_new_generation(reg):
    job, _ = reg.start("s", "test")
    reg.add_segment("s", Segment(sequence=0, start_s=0, end_s=6, file="f"), 100)
    assert reg.finish("s", job, StreamState.ENDED, "input ended")
    job2, created = reg.start("s", "test")
    assert created and job2 != job
    rec = reg.get("s")
    assert rec.generation == 2 and rec.state is StreamState.STARTING and rec.segments == []


def test_writes_from_a_stale_job_are_ignored(reg):
    job, _ = reg.start("s", "test")
    assert not reg.mark_live("s", "someoneelse")
    assert not reg.finish("s", "someoneelse", StreamState.FAILED, "x")
    assert reg.get("s").state is StreamState.STARTING
    assert reg.finish("s", job, StreamState.ENDED, "done")
    assert not reg.mark_draining("s", job, "late")  # no way back from ended
    assert reg.get("s").state is StreamState.ENDED


def test_finished_records_expire(reg):
    job, _ = reg.start("s", "test")
    reg.add_segment("s", Segment(sequence=0, start_s=0, end_s=6, file="f"), 100)
    assert reg.r.ttl(reg.key("s")) == -1
    reg.finish("s", job, StreamState.ENDED, "done")
    assert 0 < reg.r.ttl(reg.key("s")) <= 60
    assert 0 < reg.r.ttl(reg.key("s", "segments")) <= 60


def test_one_lease_holder(reg):
    job, _ = reg.start("s", "test")
    assert reg.lease("s", job, 5)
    assert reg.lease("s", job, 5)  # refresh
    assert not reg.lease("s", "dup", 5)
    reg.release("s", "dup")  # not the owner: no effect
    assert reg.lease_owner("s") == job
    reg.release("s", job)
    assert reg.lease_owner("s") is None


def test_reconcile_fails_a_stream_whose_heartbeat_stopped(reg):
    job, _ = reg.start("s", "test")
    reg.lease("s", job, 0.05)
    reg.set_fields("s", heartbeat_at=1000.0)
    reg.mark_live("s", job)
    assert reg.reconcile(30) == []  # lease still held
    reg.r.delete(reg.key("s", "lease"))  # what expiry does
    reg.test_clock.t = 1012.0
    assert reg.reconcile(30) == ["s"]
    rec = reg.get("s")
    assert rec.state is StreamState.FAILED
    assert "heartbeat lost" in rec.reason and "12.0s" in rec.reason


def test_reconcile_fails_a_job_nobody_picked_up(reg):
    reg.start("s", "test")
    reg.test_clock.t = 1020.0
    assert reg.reconcile(30) == []
    reg.test_clock.t = 1031.0
    assert reg.reconcile(30) == ["s"]
    assert "no ingest worker started" in reg.get("s").reason


def test_segments_and_counters(reg):
    job, _ = reg.start("s", "test")
    reg.add_segment("s", Segment(sequence=1, start_s=6, end_s=12.02, file="b"), 10)
    reg.add_segment("s", Segment(sequence=0, start_s=0, end_s=6, file="a"), 20)
    reg.update_segment("s", 0, status="processed", transcript="hi")
    rec = reg.get("s")
    assert [s.sequence for s in rec.segments] == [0, 1]
    assert rec.segments[0].status == "processed" and rec.segments[0].transcript == "hi"
    assert rec.segment_count == 2 and rec.media_bytes == 30
    assert rec.media_seconds == pytest.approx(12.02)
    with pytest.raises(KeyError):
        reg.update_segment("s", 9, status="x")


def test_request_stop_marks_draining(reg):
    job, _ = reg.start("s", "test")
    assert reg.request_stop("s", job, "stopped by operator")
    rec = reg.get("s")
    assert rec.state is StreamState.DRAINING and rec.stop_requested and rec.reason == "stopped by operator"


def test_segment_updates_merge_concurrent_fields_and_timings(reg):
    reg.start("s", "test")
    reg.add_segment("s", Segment(sequence=0, start_s=0, end_s=6, file="f"), 1)
    reg.update_segment("s", 0, timings_ms={"extract": 5.0}, deadline_at=10.0)
    reg.update_segment("s", 0, timings_ms={"sts_rtt": 7.0}, transcript="hola")
    reg.update_segment("s", 0, fallback_piece="fb")
    seg = reg.segment("s", 0)
    assert seg.timings_ms == {"extract": 5.0, "sts_rtt": 7.0}
    assert (seg.deadline_at, seg.transcript, seg.fallback_piece) == (10.0, "hola", "fb")
