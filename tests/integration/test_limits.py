"""A stranger's burst of publishes against the limit on streams dubbed at once: real nginx-rtmp, real
ffmpeg publishers, real Redis. The publishes over the limit are refused by the media server before any
job starts, each is counted, and the streams within it are dubbed."""

import pytest
import redis

from tests.support import local_stack
from worker.devstack.samples import make_video
from worker.media.procs import wait_until
from worker.state.registry import StreamRegistry

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=55), pytest.mark.timeout(300)]


def test_fifty_publishes_against_a_limit_of_eight(tmp_path, media_dir):
    video = make_video(media_dir / "av12.flv", 12.0)
    with local_stack(tmp_path / "run", "--engine", "echo", env={"LIVEDUB_MAX_LIVE_STREAMS": "8"}) as stack:
        pubs = {f"burst{i}": stack.publish(video, f"burst{i}") for i in range(50)}
        try:
            codes = {sid: p.wait(120) for sid, p in pubs.items()}
        finally:
            for p in pubs.values():
                if p.poll() is None:
                    p.kill()
        reg = StreamRegistry(redis.Redis.from_url(stack.state["redis_url"]))
        known = [sid for sid in pubs if reg.get(sid, with_segments=False) is not None]
        wait_until(lambda: all(reg.get(s, with_segments=False).state.value in ("ended", "failed") for s in known),
                   90, 0.5, "the accepted streams to end")
        records = {sid: reg.get(sid, with_segments=False) for sid in known}
        counters, _, _ = reg.metrics.snapshot()
    refused = [sid for sid, code in codes.items() if code != 0]
    assert len(known) == 8 and len(refused) == 42, (len(known), len(refused))
    assert set(known).isdisjoint(refused)  # a refused publish left no stream and no job behind
    assert all(r.state.value == "ended" for r in records.values()), {s: r.reason for s, r in records.items()}
    assert counters["livedub_publishes_refused_total|reason=stream_limit"] == 42



def test_a_stream_over_its_disk_quota_is_stopped_with_the_reason(tmp_path, media_dir):
    # 8: a quota of 1 MB; the first seconds of a stream (its cut video and the audio track) pass it
    video = make_video(media_dir / "av20q.flv", 20.0, speech=True)
    with local_stack(tmp_path / "run", "--engine", "echo", env={"LIVEDUB_MAX_STREAM_DISK_MB": "1"}) as stack:
        pub = stack.publish(video, "quota")
        try:
            rec = stack.wait_state("quota", {"ended", "failed"}, 60)
        finally:
            pub.kill()
            pub.wait()
        counters, _, _ = StreamRegistry(redis.Redis.from_url(stack.state["redis_url"])).metrics.snapshot()
    assert rec["state"] == "failed" and "disk quota" in rec["reason"] and "of 1 MB" in rec["reason"], rec["reason"]
    assert counters["livedub_limit_stops_total|limit=disk"] == 1
