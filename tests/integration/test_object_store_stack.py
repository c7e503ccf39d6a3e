"""`livedub up` with the store role: every stage reads and writes the S3-compatible bucket, and a
published stream comes out dubbed, whole and in sync."""

import pytest

from tests.support import dub_report, local_stack
from worker.devstack.s3server import client_for
from worker.media.analyze import analyze_file

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=45), pytest.mark.timeout(240)]
ONE_HOST = "redis,store,api,media-server,sts-service,ingest,sts,collect,remux,publish"


def test_a_stream_is_dubbed_through_the_object_store(tmp_path, video_20s):
    run_dir = tmp_path / "run"
    with local_stack(run_dir, "--engine", "echo", "--only", ONE_HOST) as stack:
        assert stack.state["store_url"].startswith("s3+http://livedub-")  # complete: with its credentials
        rep = dub_report(stack, video_20s, tmp_path / "out.mp4", "obj1")
        rec = stack.stream("obj1")
        client, loc = client_for(stack.state["store_url"])
        names = {o.object_name for o in client.list_objects(loc.bucket, prefix=loc.prefix, recursive=True)}
    assert rec["state"] == "ended", rec["reason"]
    assert rep["segments"] == {"processed": len(rec["segments"]), "fallback": 0, "failed": 0}
    for seg in rec["segments"]:  # what each stage made is in the bucket, by its key
        for key in (seg["file"], seg["piece"], seg["fallback_piece"]):
            assert f"{loc.prefix}{key}" in names
    # and not on this host's disk: the work directory is only a scratch
    assert not list((run_dir / "store").rglob("*.ts")) and not list((run_dir / "store").rglob("*.pcm"))
    out = analyze_file(tmp_path / "out.mp4")
    assert out.check(out.video.end_s - out.video.start_s, 0.1, 25) == []
    assert abs(out.video.duration_s - 20.0) < 0.2
