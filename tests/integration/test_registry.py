"""The registry against a real Redis, with an injected clock."""

import pytest
import redis

from worker.core.models import StreamState
from worker.core.segments import Segment
from worker.state.registry import StartOutcome, StreamRegistry

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
    job, outcome, _ = reg.start("s", "test")
    assert outcome is StartOutcome.CREATED
    assert reg.start("s", "test")[:2] == (job, StartOutcome.EXISTING)
    assert reg.mark_live("s", job)
    assert reg.start("s", "test")[:2] == (job, StartOutcome.EXISTING)
    rec = reg.get("s")
    assert rec.state is StreamState.LIVE and rec.live_at == 1000.0 and rec.generation == 1


def test_a_new_publish_after_the_end_is_a_new_generation(reg):
    job = reg.start("s", "test").job_id
    reg.add_segment("s", Segment(sequence=0, start_s=0, end_s=6, file="f"), 100)
    assert reg.finish("s", job, StreamState.ENDED, "input ended")
    job2, outcome, _ = reg.start("s", "test")
    assert outcome is StartOutcome.CREATED and job2 != job
    rec = reg.get("s")
    assert rec.generation == 2 and rec.state is StreamState.STARTING and rec.segments == []


def test_writes_from_a_stale_job_are_ignored(reg):
    job = reg.start("s", "test").job_id
    assert not reg.mark_live("s", "someoneelse")
    assert not reg.finish("s", "someoneelse", StreamState.FAILED, "x")
    assert reg.get("s").state is StreamState.STARTING
    assert reg.finish("s", job, StreamState.ENDED, "done")
    assert not reg.mark_draining("s", job, "late")  # no way back from ended
    assert reg.get("s").state is StreamState.ENDED


def test_finished_records_expire(reg):
    job = reg.start("s", "test").job_id
    reg.add_segment("s", Segment(sequence=0, start_s=0, end_s=6, file="f"), 100)
    assert reg.ttls("s") == {"record": -1, "segments": -1}
    reg.finish("s", job, StreamState.ENDED, "done")
    assert all(0 < ttl <= 60 for ttl in reg.ttls("s").values())


def test_one_lease_holder(reg):
    job = reg.start("s", "test").job_id
    assert reg.lease("s", job, 5)
    assert reg.lease("s", job, 5)  # refresh
    assert not reg.lease("s", "dup", 5)
    reg.release("s", "dup")  # not the owner: no effect
    assert reg.lease_owner("s") == job
    reg.release("s", job)
    assert reg.lease_owner("s") is None


def test_reconcile_fails_a_stream_whose_heartbeat_stopped(reg):
    job = reg.start("s", "test").job_id
    reg.lease("s", job, 0.05)
    reg.set_fields("s", heartbeat_at=1000.0)
    reg.mark_live("s", job)
    assert reg.reconcile(30) == []  # lease still held
    reg.drop_lease("s")  # what expiry does
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
    reg.start("s", "test")
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
    job = reg.start("s", "test").job_id
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


def _drained(reg, job, segments=1):
    """A stream whose input dropped: the stop hook marked it draining, its run recorded the end."""
    for i in range(segments):
        reg.add_segment("s", Segment(sequence=i, start_s=6 * i, end_s=6 * i + 6, file=f"f{i}"), 100)
    assert reg.mark_live("s", job)
    assert reg.mark_draining("s", job, "publish done")
    assert reg.end_input("s", job, 0, segments, "input ended", StreamState.DRAINING)


def test_a_republish_while_draining_resumes_the_same_job(reg):
    job = reg.start("s", "test").job_id
    _drained(reg, job, segments=2)
    assert reg.get("s").segments_final == 2
    again = reg.start("s", "test")
    assert again == (job, StartOutcome.RESUMED, 1)
    rec = reg.get("s")
    assert rec.state is StreamState.LIVE and rec.resumes == 1 and rec.generation == 1
    assert rec.segments_final is None and rec.reason is None and len(rec.segments) == 2  # nothing lost
    assert reg.start("s", "test")[:2] == (job, StartOutcome.EXISTING)  # a duplicate hook changes nothing


def test_the_run_a_republish_replaced_cannot_end_the_stream(reg):
    job = reg.start("s", "test").job_id
    reg.add_segment("s", Segment(sequence=0, start_s=0, end_s=6, file="f0"), 100)
    assert reg.mark_live("s", job) and reg.mark_draining("s", job, "publish done")
    assert reg.start("s", "test").outcome is StartOutcome.RESUMED  # before the old run saw its input end
    # The old run (epoch 0) now records its end: refused, the resumed run owns the stream.
    assert not reg.end_input("s", job, 0, 1, "input ended", StreamState.DRAINING)
    assert not reg.end_input("s", job, 0, None, "no media", StreamState.FAILED)
    rec = reg.get("s")
    assert rec.state is StreamState.LIVE and rec.segments_final is None
    assert reg.end_input("s", job, 1, 3, "input ended", StreamState.DRAINING)  # the resumed run's end
    assert reg.get("s").segments_final == 3


def test_no_resume_after_the_publisher_sealed_or_an_operator_stop(reg):
    job = reg.start("s", "test").job_id
    _drained(reg, job)
    assert reg.seal("s", job)
    assert reg.start("s", "test").outcome is StartOutcome.CREATED  # a new generation
    job = reg.start("s", "test").job_id
    assert reg.mark_live("s", job) and reg.request_stop("s", job, "stopped by operator")
    assert reg.start("s", "test").outcome is StartOutcome.CREATED


def test_seal_is_refused_once_the_input_came_back(reg):
    job = reg.start("s", "test").job_id
    _drained(reg, job)
    assert reg.start("s", "test").outcome is StartOutcome.RESUMED
    assert not reg.seal("s", job)  # the publisher keeps going
    assert not reg.seal("s", "otherjob")


def test_only_declared_fields_are_written(reg):
    reg.start("s", "test")
    reg.add_segment("s", Segment(sequence=0, start_s=0, end_s=6, file="f"), 1)
    with pytest.raises(KeyError, match="declares no field"):
        reg.set_fields("s", ingest_prat=1)
    with pytest.raises(KeyError, match="declares no field"):
        reg.update_segment("s", 0, dub_reson="x")
    with pytest.raises(KeyError, match="declares no field"):
        reg.incr("s", "published_cnt")
    assert reg.set_fields("s", served_epoch=2) and reg.get("s").served_epoch == 2


def test_counters_are_atomic_and_never_recreate_a_lost_record(reg):
    reg.start("s", "test")
    assert [reg.incr("s", "ingest_part") for _ in range(3)] == [1, 2, 3]
    assert reg.get("s").ingest_part == 3
    assert reg.incr("gone", "published_count") is None
    assert not reg.set_fields("gone", published_count=1)
    assert reg.get("gone") is None


def test_listing_streams_does_not_load_their_segments(reg):
    for sid in ("a", "b"):
        reg.start(sid, "test")
        reg.add_segment(sid, Segment(sequence=0, start_s=0, end_s=6, file="f"), 1)
    listed = reg.list()
    assert sorted(r.stream_id for r in listed) == ["a", "b"]
    assert all(r.segments == [] and r.segment_count == 1 for r in listed)
    assert reg.count_by_state() == {"starting": 2}


def test_reading_a_stream_never_reconciles_it(reg):
    reg.start("s", "test")
    reg.test_clock.t = 5000.0  # long past the start timeout
    assert reg.get("s").state is StreamState.STARTING and reg.list()[0].state is StreamState.STARTING
    assert reg.reconcile(30, only="s") == ["s"]


def test_a_new_stream_over_the_limit_is_refused_and_active_ones_are_not(reg):
    a, b = reg.start("a", "test"), reg.start("b", "test", max_active=2)
    assert a.created and b.created
    over = reg.start("c", "test", max_active=2)
    assert over.outcome is StartOutcome.AT_LIMIT and over.resume == 2 and reg.get("c") is None
    assert reg.start("a", "test", max_active=2).outcome is StartOutcome.EXISTING  # a live one goes on
    reg.mark_draining("b", b.job_id, "publish done")
    assert reg.start("c", "test", max_active=2).outcome is StartOutcome.AT_LIMIT  # draining still counts
    assert reg.start("b", "test", max_active=2).outcome is StartOutcome.RESUMED  # and may come back
    reg.finish("a", a.job_id, StreamState.ENDED, "input ended")
    assert reg.start("c", "test", max_active=2).created  # a slot came free
    assert reg.start("d", "test", max_active=0).created  # 0: no limit
