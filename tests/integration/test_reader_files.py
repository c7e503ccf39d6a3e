"""The files a reader and a publisher's ffmpeg write, read the way a stream of hours needs: each poll reads
what is new, not the whole history (real files, real threads)."""

import io

import pytest

from worker.media.progress import ProgressLog, wall_at
from worker.pipeline.reader_steps import SegmentListTail

pytestmark = pytest.mark.integration


def test_the_segment_list_is_read_on_from_where_the_last_read_stopped(tmp_path):
    path = tmp_path / "list.csv"
    tail = SegmentListTail()
    assert tail.read(path) == []  # the reader has not closed a segment yet
    path.write_bytes(b"seg_00000.ts,0.000000,2.000000\nseg_00001.ts,2.000000,4.0")
    assert [e.sequence for e in tail.read(path)] == [0]  # the second line is still being written
    with open(path, "r+b") as f:  # what was read is not read again: a full re-parse would see this edit
        f.write(b"seg_00000.ts,0.000000,2.500000")
        f.seek(0, 2)
        f.write(b"00000\nseg_00002.ts,4.000000,6.000000\n")
    entries = tail.read(path)
    assert [(e.sequence, e.start_s, e.end_s) for e in entries] == [(0, 0.0, 2.0), (1, 2.0, 4.0), (2, 4.0, 6.0)]
    assert tail.offset == path.stat().st_size
    path.write_bytes(b"seg_00007.ts,14.000000,16.000000\n")  # written anew, shorter: read from the start
    assert [e.sequence for e in tail.read(path)] == [7]
    other = tmp_path / "part1.csv"
    other.write_bytes(b"seg_00009.ts,18.000000,20.000000\n")
    assert [e.sequence for e in tail.read(other)] == [9]  # another reader's list: its own entries


def test_a_publishers_progress_keeps_only_what_pieces_to_come_need():
    lines = b"".join(b"out_time_us=%d\nprogress=continue\n" % (i * 250_000) for i in range(1, 401))
    clock = iter(float(i) for i in range(1, 10_000))
    log = ProgressLog(io.BytesIO(lines), clock=lambda: next(clock))
    log.thread.join(5)
    assert len(log.points) == 400 and log.points[0] == (1.0, 0.25)
    log.forget_before(50.1)
    assert log.points[0] == (200.0, 50.0) and log.media_s == 100.0  # the sample before it stays, to interpolate
    assert wall_at(log.points, 50.125) == 200.5 and wall_at(log.points, 75.0) == 300.0
    log.forget_before(10.0)  # a piece from before what is kept: nothing more goes
    assert log.points[0] == (200.0, 50.0)
