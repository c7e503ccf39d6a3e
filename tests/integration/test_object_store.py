"""The object store backend against a real S3-compatible server (MinIO, or moto's server here)."""

from pathlib import Path

import pytest

from tests.support import FakeClock, free_port
from worker.core.settings import load_settings
from worker.state.object_store import ObjectSegmentStore
from worker.state.store import StoreError, make_store

pytestmark = pytest.mark.integration


def store_at(url: str, scratch: Path, clock=None) -> ObjectSegmentStore:
    store = make_store(load_settings(store_url=url, store_dir=scratch, hook_insecure=True))
    assert isinstance(store, ObjectSegmentStore)
    if clock is not None:
        store.clock = clock
    return store


def test_a_file_put_on_one_host_is_fetched_and_streamed_on_another(s3_url, tmp_path):
    a, b = store_at(s3_url, tmp_path / "host-a"), store_at(s3_url, tmp_path / "host-b")
    src = a.work_dir("cam1", "j1") / "seg_00000.ts"
    payload = bytes(range(256)) * 8000  # 2 MB
    src.write_bytes(payload)
    key = a.put(src)
    a.discard(src)
    assert key == "cam1/j1/seg_00000.ts" and not src.exists()
    with b.fetch(key) as local:
        assert local.read_bytes() == payload and str(local).startswith(str(tmp_path / "host-b"))
    assert not local.exists()  # the fetched copy is private and removed afterwards
    with b.open(key) as body:
        assert body.read(10) == payload[:10] and body.read() == payload[10:]


def test_keys_outside_a_job_never_reach_the_server(s3_url, tmp_path):
    store = store_at(s3_url, tmp_path)
    with pytest.raises(ValueError):
        store.read("../../other-bucket/x")
    with pytest.raises(ValueError):
        store.work_dir("../x", "j1")


def test_a_missing_object_is_a_store_error(s3_url, tmp_path):
    with pytest.raises(StoreError):
        store_at(s3_url, tmp_path).read("cam1/j1/nothing.ts")


def test_an_unreachable_store_is_a_store_error(tmp_path):
    store = store_at(f"s3+http://k:s@127.0.0.1:{free_port()}/livedub/x", tmp_path)
    store.client._http.connection_pool_kw["retries"] = 0  # fail now, not after urllib3's back-off
    src = store.work_dir("cam1", "j1") / "x.pcm"
    src.write_bytes(b"x")
    with pytest.raises(StoreError):
        store.put(src)


def test_expired_jobs_are_swept_and_live_ones_kept(s3_url, tmp_path):
    clock = FakeClock(5000.0)
    store = store_at(s3_url.rsplit("/", 1)[0] + "/sweep", tmp_path, clock)
    for job in ("old", "young"):
        f = store.work_dir("cam2", job) / "piece_00000.ts"
        f.write_bytes(b"piece")
        store.put(f)
    store.expire("cam2", "old", ttl_s=60)
    store.expire("cam2", "young", ttl_s=600)
    assert store.sweep() == 0
    clock.t += 61
    assert store.sweep() == 1
    with pytest.raises(StoreError):
        store.read("cam2/old/piece_00000.ts")
    assert store.read("cam2/young/piece_00000.ts") == b"piece"
    names = [o.object_name for o in store.client.list_objects(store.loc.bucket, prefix=store.loc.prefix,
                                                               recursive=True)]
    assert not any("old" in n for n in names)
