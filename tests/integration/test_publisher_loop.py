"""The publisher's loop, driven with a fake clock and a fake ffmpeg against a real Redis: what it feeds at
each deadline, in which order, what it records and counts, and how it ends the stream."""

import io
import threading

import pytest

from tests.support import FakeClock, fresh_pipeline
from worker.core.models import StreamState
from worker.core.segments import DubOutcome, Reason, ReasonCode, Segment, SegmentStatus
from worker.pipeline.publisher import Publisher
from worker.state.registry import Lease

pytestmark = pytest.mark.integration


class RecordingStdin(io.RawIOBase):
    """ffmpeg's stdin: records each piece written, with the fake time it was written at."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.writes = clock, []
        self.on_write = lambda: None

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.writes.append((self.clock(), bytes(b)))
        self.on_write()
        return len(b)


class FakeFfmpeg:
    def __init__(self, clock: FakeClock, die_after: int | None = None) -> None:
        self.stdin = RecordingStdin(clock)
        self.stdout = io.BytesIO(b"")  # no -progress lines
        self.returncode: int | None = None
        self.pid = 0
        self.die_after = die_after

    def poll(self):
        if self.die_after is not None and len(self.stdin.writes) >= self.die_after:
            self.returncode = 1
        return self.returncode

    def wait(self, timeout=None):
        self.returncode = 0 if self.returncode is None else self.returncode
        return self.returncode

    def send_signal(self, sig) -> None:
        self.returncode = -sig


class FakeRunner:
    def __init__(self, proc: FakeFfmpeg) -> None:
        self.proc, self.args = proc, None

    def start(self, args, **_):
        self.args = args
        return self.proc


@pytest.fixture
def env(tmp_path, redis_url):
    reg, store, settings, clock, job = fresh_pipeline(redis_url, tmp_path, republish_grace_s=8)
    reg.mark_live("s", job)
    reg.set_fields("s", origin_at=1000.0, output_delay_s=8.0)
    return reg, store, settings, clock, job


def add(reg, store, job, seq, deadline, **fields):
    """A prepared segment with its fallback piece (and a dubbed piece if ``ready``)."""
    job_dir = store.work_dir("s", job)
    fb = job_dir / f"fallback_{seq:05d}.ts"
    fb.write_bytes(f"fallback-{seq}".encode())
    reg.add_segment("s", Segment(sequence=seq, start_s=6.0 * seq, end_s=6.0 * seq + 6, file=f"s/{job}/seg{seq}"), 1)
    if fields.pop("ready", False):
        piece = job_dir / f"piece_{seq:05d}.ts"
        piece.write_bytes(f"dubbed-{seq}".encode())
        fields.update(dub=DubOutcome.READY, piece=store.key_of(piece))
    reg.update_segment("s", seq, deadline_at=deadline, fallback_piece=store.key_of(fb), **fields)


def run(reg, store, settings, clock, job, proc):
    pub = Publisher("s", job, registry=reg, store=store, settings=settings, runner=FakeRunner(proc), clock=clock,
                    sleep=clock.sleep)
    return pub.run()


def test_each_deadline_gets_the_dub_if_ready_else_the_fallback_in_order(env):
    reg, store, settings, clock, job = env
    add(reg, store, job, 0, 1007.7, ready=True)  # dubbed in time
    add(reg, store, job, 1, 1013.7)  # never dubbed: late
    add(reg, store, job, 2, 1019.7, dub=DubOutcome.FALLBACK, dub_reason="DECODE_ERROR",
        dub_reason_code=ReasonCode.STS_FAILED)  # the chain gave up
    reg.end_input("s", job, 0, 3, "input ended", StreamState.DRAINING)
    reg.set_fields("s", stop_requested=1)  # no re-publish grace: end after the last piece
    proc = FakeFfmpeg(clock)

    assert run(reg, store, settings, clock, job, proc) == "all pieces published"

    assert [data.decode() for _, data in proc.stdin.writes] == ["dubbed-0", "fallback-1", "fallback-2"]
    segs = reg.segments("s")
    out_at = [s.published_at for s in segs]
    assert out_at[0] < 1001.0  # a ready dub goes out at once
    assert 1013.7 <= out_at[1] < 1013.8  # the late one at its deadline, not before
    assert out_at[2] < 1019.7  # a fallen-back chain does not wait for its deadline
    assert [s.status for s in segs] == [SegmentStatus.PROCESSED, SegmentStatus.FALLBACK, SegmentStatus.FALLBACK]
    assert [s.reason_code for s in segs] == [None, ReasonCode.LATE, ReasonCode.STS_FAILED]
    rec = reg.get("s")
    assert rec.state is StreamState.ENDED and rec.published_count == 3 and rec.publisher_sealed
    counters, _, _ = reg.metrics.snapshot()
    assert counters["livedub_fallbacks_total|reason=late"] == 1
    assert counters["livedub_fallbacks_total|reason=sts_failed"] == 1
    assert counters["livedub_segments_total|status=processed"] == 1
    assert counters["livedub_late_pieces_total|"] == 1


def test_a_dropped_input_keeps_the_output_up_for_the_grace_then_ends(env):
    reg, store, settings, clock, job = env
    add(reg, store, job, 0, 1007.7, ready=True)
    reg.mark_draining("s", job, "publish done")
    reg.end_input("s", job, 0, 1, "input ended", StreamState.DRAINING)  # input ended at 1000.0
    proc = FakeFfmpeg(clock)
    assert run(reg, store, settings, clock, job, proc) == "all pieces published"
    assert clock() >= 1008.0  # it held the output until the grace (8 s from the input's end) ran out


def test_when_ffmpeg_dies_the_rest_are_failed_with_the_reason(env):
    reg, store, settings, clock, job = env
    for seq in range(3):  # none dubbed: each goes out at its deadline, 6 s apart
        add(reg, store, job, seq, 1007.7 + 6 * seq)
    reg.end_input("s", job, 0, 3, "input ended", StreamState.DRAINING)
    proc = FakeFfmpeg(clock, die_after=1)
    assert run(reg, store, settings, clock, job, proc).startswith("publisher ffmpeg stopped at segment 1")
    segs = reg.segments("s")
    assert segs[0].status is SegmentStatus.FALLBACK
    assert [(s.status, s.reason_code) for s in segs[1:]] == [(SegmentStatus.FAILED, ReasonCode.PUBLISHER_STOPPED)] * 2


def test_a_restarted_publisher_goes_on_from_the_first_segment_not_out(env):
    reg, store, settings, clock, job = env
    for seq in range(3):
        add(reg, store, job, seq, 1007.7 + 6 * seq, ready=True)
    reg.update_segment("s", 0, status=SegmentStatus.PROCESSED)  # the dead publisher put out piece 0
    reg.end_input("s", job, 0, 3, "input ended", StreamState.DRAINING)
    reg.set_fields("s", stop_requested=1)
    proc = FakeFfmpeg(clock)
    run(reg, store, settings, clock, job, proc)
    assert [d.decode() for _, d in proc.stdin.writes] == ["dubbed-1", "dubbed-2"]


def test_a_publisher_shutting_down_hands_over_at_a_piece_boundary_and_its_successor_goes_on(env):
    reg, store, settings, clock, job = env
    for seq in range(4):
        add(reg, store, job, seq, 1007.7 + 6 * seq, ready=True)
    reg.end_input("s", job, 0, 4, "input ended", StreamState.DRAINING)
    reg.set_fields("s", stop_requested=1)
    shutdown, handed = threading.Event(), []
    old = FakeFfmpeg(clock)
    old.stdin.on_write = shutdown.set  # SIGTERM arrives while the first piece is being written
    pub = Publisher("s", job, registry=reg, store=store, settings=settings, runner=FakeRunner(old), clock=clock,
                    sleep=clock.sleep, shutdown=shutdown, hand_over=handed.append)
    assert pub.run().startswith("handed over")
    assert handed == [1]  # the successor was queued
    rec = reg.get("s")
    assert rec.state is StreamState.DRAINING and rec.publisher_handovers == 1  # not ended, not failed
    assert reg.lease_owner("s", Lease.PUBLISHER) is None  # let go once its ffmpeg played out
    first = [d.decode() for _, d in old.stdin.writes]
    assert first[0] == "dubbed-0" and len(first) <= 2  # it stopped at a piece boundary

    new = FakeFfmpeg(clock)
    succ = Publisher("s", job, registry=reg, store=store, settings=settings, runner=FakeRunner(new), clock=clock,
                     sleep=clock.sleep, taking_over=True)
    assert succ.run() == "all pieces published"
    out = first + [d.decode() for _, d in new.stdin.writes]
    assert out == [f"dubbed-{i}" for i in range(4)]  # no piece lost, none twice
    rec = reg.get("s")
    assert rec.state is StreamState.ENDED and rec.published_count == 4
    assert {s.status for s in reg.segments("s")} == {SegmentStatus.PROCESSED}
    counters, _, _ = reg.metrics.snapshot()
    assert counters["livedub_publisher_handovers_total|"] == 1


def test_a_successor_waits_for_its_predecessor_to_let_the_output_go(env):
    reg, store, settings, clock, job = env
    add(reg, store, job, 0, 1007.7, ready=True)
    reg.end_input("s", job, 0, 1, "input ended", StreamState.DRAINING)
    reg.set_fields("s", stop_requested=1)
    assert reg.lease("s", "predecessor", settings.heartbeat_ttl_s, Lease.PUBLISHER)
    plain = Publisher("s", job, registry=reg, store=store, settings=settings, runner=FakeRunner(FakeFfmpeg(clock)),
                      clock=clock, sleep=clock.sleep)
    assert plain.run().startswith("duplicate")  # a second publisher is refused at once

    class Releasing(FakeClock):
        def sleep(self, s: float) -> None:
            super().sleep(s)
            if self.t >= 1003.0:  # the predecessor's ffmpeg is done after 3 s
                reg.release("s", "predecessor", Lease.PUBLISHER)

    slow = Releasing(clock.t)
    proc = FakeFfmpeg(slow)
    succ = Publisher("s", job, registry=reg, store=store, settings=settings, runner=FakeRunner(proc), clock=slow,
                     sleep=slow.sleep, taking_over=True)
    assert succ.run() == "all pieces published" and [d for _, d in proc.stdin.writes] == [b"dubbed-0"]


def test_an_unreadable_dubbed_piece_goes_out_as_its_fallback_and_an_unreadable_pair_fails_alone(env):
    reg, store, settings, clock, job = env
    for seq in range(3):
        add(reg, store, job, seq, 1007.7 + 6 * seq, ready=True)
    (store.work_dir("s", job) / "piece_00000.ts").unlink()  # the store lost the dub
    (store.work_dir("s", job) / "piece_00001.ts").unlink()  # and both pieces of the next one
    (store.work_dir("s", job) / "fallback_00001.ts").unlink()
    reg.end_input("s", job, 0, 3, "input ended", StreamState.DRAINING)
    reg.set_fields("s", stop_requested=1)
    proc = FakeFfmpeg(clock)
    assert run(reg, store, settings, clock, job, proc) == "all pieces published"
    assert [d.decode() for _, d in proc.stdin.writes] == ["fallback-0", "dubbed-2"]
    segs = reg.segments("s")
    assert [(s.status, s.reason_code) for s in segs] == [
        (SegmentStatus.FALLBACK, ReasonCode.STORE_UNAVAILABLE), (SegmentStatus.FAILED, ReasonCode.STORE_UNAVAILABLE),
        (SegmentStatus.PROCESSED, None)]


def test_a_published_segments_files_are_removed_after_the_grace(env):
    reg, store, settings, clock, job = env
    job_dir = store.work_dir("s", job)
    for seq, deadline in ((0, 1007.7), (1, 1013.7), (2, 1019.7)):
        add(reg, store, job, seq, deadline, ready=seq == 0)  # 1 and 2 go out late, at their deadlines
        for name in (f"seg{seq}", f"orig_{seq:05d}.pcm", f"fit_{seq:05d}.pcm", f"dub_{seq:05d}.wav"):
            (job_dir / name).write_bytes(b"x")
    reg.end_input("s", job, 0, 3, "input ended", StreamState.DRAINING)
    reg.set_fields("s", stop_requested=1)
    settings = settings.model_copy(update={"keep_published_s": 10.0})
    assert run(reg, store, settings, clock, job, FakeFfmpeg(clock)) == "all pieces published"
    left = sorted(p.name for p in job_dir.iterdir() if not p.name.startswith("."))
    # segment 0 went out at ~1000 s, segment 1 at ~1013.7 s: 0's files were removed then; 1 and 2 are
    # within the grace when the stream ended (the job's expiry takes them)
    assert not [n for n in left if n.endswith("00000.pcm") or n.endswith("00000.ts") or n == "seg0"], left
    assert {"seg1", "fallback_00001.ts", "orig_00001.pcm", "seg2"} <= set(left)


def test_a_speech_units_files_are_removed_once_no_piece_left_needs_them(env):
    """Speech mode: a unit's speech, its dub and its placed dub go (after the grace) once a piece that
    starts after its dub (or, fallen back, its speech) is published; the units still under pieces to
    come stay. Without this a stream kept them all and passed its disk quota in about 95 minutes."""
    from worker.core.speech import CutKind
    from worker.core.units import Unit
    from worker.state.units import UnitBook

    reg, store, settings, clock, job = env
    reg.set_fields("s", segmentation="speech")
    job_dir, book = store.work_dir("s", job), UnitBook(reg)
    for seq, deadline in ((0, 1007.7), (1, 1013.7), (2, 1019.7)):
        add(reg, store, job, seq, deadline, ready=seq == 0)  # 1 and 2 go out at their deadlines
    # 0: its dub ends under piece 0; 1: spoken under piece 0, its dub runs into piece 1; 2: fell back
    units = {0: (1.0, 3.0, (1.2, 3.4)), 1: (3.5, 5.5, (4.0, 6.8)), 2: (6.5, 8.0, None)}
    for seq, (start, end, dub) in units.items():
        book.add("s", Unit(sequence=seq, start_s=start, end_s=end, cut=CutKind.PAUSE))
        names = [f"unit_{seq:05d}.pcm", f"dub_u{seq:05d}.wav"] + ([f"placed_u{seq:05d}.pcm"] if dub else [])
        for name in names:
            (job_dir / name).write_bytes(b"x")
        if dub:
            book.place("s", seq, dub[0], dub_start_s=dub[0], dub_end_s=dub[1], dub_key=f"s/{job}/placed_u{seq:05d}.pcm")
        else:
            book.settle("s", seq, SegmentStatus.FALLBACK, Reason(ReasonCode.LATE, "late"))
    reg.end_input("s", job, 0, 3, "input ended", StreamState.DRAINING)
    reg.set_fields("s", stop_requested=1)
    settings = settings.model_copy(update={"keep_published_s": 5.0})
    assert run(reg, store, settings, clock, job, FakeFfmpeg(clock)) == "all pieces published"
    left = {p.name for p in job_dir.iterdir()}
    # piece 1 (from 6 s) went out at ~1013.7 s: unit 0 (its dub ended at 3.4 s) was queued then and removed
    # when piece 2 went out at ~1019.7 s; units 1 (its dub under piece 1) and 2 were queued at piece 2, and
    # were within the grace when the stream ended (the job's expiry takes them)
    assert not {"unit_00000.pcm", "dub_u00000.wav", "placed_u00000.pcm"} & left, left
    assert {"unit_00001.pcm", "dub_u00001.wav", "placed_u00001.pcm", "unit_00002.pcm"} <= left, left
    # the record says how far files are gone, not how far they are queued: a successor queues 1 and 2 again
    assert reg.get("s").units_retired == 1


def test_a_publisher_that_takes_over_goes_on_removing_unit_files_where_its_predecessor_stopped(env):
    """The cursor is on the stream's record: a successor does not read a long stream's units from the first
    (one Redis read each, in the publisher's loop) to find the files still there."""
    from worker.state.units import UnitBook

    reg, store, settings, clock, job = env
    reg.set_fields("s", segmentation="speech")
    job_dir, book = store.work_dir("s", job), UnitBook(reg)
    for seq in range(5):
        add(reg, store, job, seq, 1007.7 + 6 * seq)
    for seq in (0, 1):  # the predecessor put these out and removed units 0 and 1's files
        reg.update_segment("s", seq, status=SegmentStatus.PROCESSED)
    reg.set_fields("s", units_retired=2)
    fallen_units(book, job_dir, ((1.0, 3.0), (4.0, 5.5), (13.0, 15.0), (20.0, 22.0)))
    assert end_and_run(env, 5, settings.model_copy(update={"keep_published_s": 5.0})) == "all pieces published"
    left = {p.name for p in job_dir.iterdir() if p.name.startswith("unit_")}
    # piece 3 (from 18 s) queued unit 2 (ended at 15 s), removed when piece 4 went out; 0 and 1 were not read
    assert left == {"unit_00000.pcm", "unit_00001.pcm", "unit_00003.pcm"}, left
    assert reg.get("s").units_retired == 3


def test_unit_files_are_retired_across_read_batches(env):
    """Units are read UNIT_BATCH (64) at a time: 150 units all spoken under piece 0 are all queued when
    piece 1 goes out, through three reads, and all removed (and recorded) when piece 2 does."""
    from worker.pipeline.publish_ledger import UNIT_BATCH
    from worker.state.units import UnitBook

    reg, store, settings, clock, job = env
    reg.set_fields("s", segmentation="speech")
    job_dir, book = store.work_dir("s", job), UnitBook(reg)
    for seq in range(3):
        add(reg, store, job, seq, 1007.7 + 6 * seq)
    count = 2 * UNIT_BATCH + 22
    fallen_units(book, job_dir, [(0.035 * seq, 0.035 * seq + 0.03) for seq in range(count)])
    assert end_and_run(env, 3, settings.model_copy(update={"keep_published_s": 5.0})) == "all pieces published"
    left = sorted(p.name for p in job_dir.iterdir() if p.name.startswith("unit_"))
    assert left == [] and reg.get("s").units_retired == count, (left[:3], len(left), reg.get("s").units_retired)


def fallen_units(book, job_dir, spans):
    """Units 0, 1, ... over ``spans`` (timeline s), each fallen back with its speech file on disk."""
    from worker.core.speech import CutKind
    from worker.core.units import Unit

    for seq, (start, end) in enumerate(spans):
        book.add("s", Unit(sequence=seq, start_s=start, end_s=end, cut=CutKind.PAUSE))
        book.settle("s", seq, SegmentStatus.FALLBACK, Reason(ReasonCode.LATE, "late"))
        (job_dir / f"unit_{seq:05d}.pcm").write_bytes(b"x")


def end_and_run(env, pieces, settings):
    """The input ended after ``pieces`` and a stop was asked for: run the publisher to its end."""
    reg, store, _, clock, job = env
    reg.end_input("s", job, 0, pieces, "input ended", StreamState.DRAINING)
    reg.set_fields("s", stop_requested=1)
    return run(reg, store, settings, clock, job, FakeFfmpeg(clock))
