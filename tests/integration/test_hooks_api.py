"""The hook and stream endpoints against a real Redis (the broker too): what lands in the queue."""

import threading
import time

import pytest
import redis

from api import create_app
from worker.core.settings import load_settings

pytestmark = pytest.mark.integration
SECRET = "t0ps3cret-0123456"
H = {"X-Livedub-Secret": SECRET}
OPERATOR = "operator-token-0123"
INTERNAL = "internal-key-0123"


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    return client


@pytest.fixture
def client(redis_url, r):
    # Publishing is open here (stream keys: test_stream_keys.py); the client carries the operator token.
    settings = app_settings(redis_url, reader_wait_s=0)
    c = create_app({"SETTINGS": settings, "TESTING": True}).test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {OPERATOR}"
    return c


def app_settings(redis_url, **kw):
    return load_settings(**{"redis_url": redis_url, "hook_secret": SECRET, "reconcile_interval_s": 0,
                            "operator_token": OPERATOR, "viewer_token": "viewer-token-0123", "internal_key": INTERNAL,
                            "open_publishing": True, **kw})


def queued_jobs(r):
    return r.llen("ingest")


def ready(client, path="live/cam1/in", headers=H, **extra):
    body = {"MTX_PATH": path, "MTX_SOURCE_TYPE": "rtmpConn", "MTX_SOURCE_ID": "c1", "MTX_QUERY": ""}
    body.update(extra)
    return client.post("/v1/hooks/mediamtx/ready", json=body, headers=headers)


def nginx(client, call, name="cam1/in", secret=SECRET, **extra):
    data = {"app": "live", "name": name, "addr": "127.0.0.1", "clientid": "7", "call": call, "type": "live"}
    data.update(extra)
    return client.post(f"/v1/hooks/nginx-rtmp/{call.replace('_', '-')}?secret={secret}", data=data)


def test_ready_starts_one_job_and_answers_202(client, r):
    resp = ready(client)
    assert resp.status_code == 202
    body = resp.get_json()
    assert body["stream_id"] == "cam1" and body["state"] == "starting" and body["created"] is True
    assert queued_jobs(r) == 1
    rec = client.get("/v1/streams/cam1").get_json()
    assert rec["job_id"] == body["job_id"] and rec["source"] == "mediamtx:rtmpConn" and rec["segments"] == []


def test_duplicate_ready_is_still_one_job(client, r):
    first = ready(client).get_json()
    second = ready(client)
    assert second.status_code == 200
    assert second.get_json()["job_id"] == first["job_id"] and second.get_json()["created"] is False
    assert queued_jobs(r) == 1


@pytest.mark.parametrize("headers", [{}, {"X-Livedub-Secret": "wrong"}, {"X-Livedub-Secret": ""}])
def test_no_or_wrong_secret_is_401(client, r, headers):
    resp = ready(client, headers=headers)
    assert resp.status_code == 401
    assert "secret" in resp.get_json()["reason"]
    assert queued_jobs(r) == 0


def test_nginx_secret_in_query(client, r):
    assert nginx(client, "publish", secret="nope").status_code == 401
    resp = nginx(client, "publish")
    assert resp.status_code == 202
    assert queued_jobs(r) == 1


@pytest.mark.parametrize("path", ["live/cam1/out", "live/cam1", "vod/cam1/in", "live/../in", "live/a b/in",
                                  "live/" + "x" * 65 + "/in", "live/caf\u00e9/in"])
def test_wrong_path_or_id_is_400_with_a_reason(client, r, path):
    resp = ready(client, path=path)
    assert resp.status_code == 400
    assert resp.get_json()["reason"]
    assert queued_jobs(r) == 0


def test_nginx_wrong_app_is_refused(client):
    resp = nginx(client, "publish", app="vod")
    assert resp.status_code == 400 and "application" in resp.get_json()["reason"]


def test_malformed_bodies_are_400(client):
    assert client.post("/v1/hooks/mediamtx/ready", data="[1]", headers={**H, "Content-Type": "application/json"}
                       ).status_code == 400
    resp = client.post("/v1/hooks/mediamtx/ready", json={"MTX_SOURCE_TYPE": "x"}, headers=H)
    assert resp.status_code == 400 and "MTX_PATH" in resp.get_json()["reason"]


def test_oversized_body_is_refused(client, r):
    resp = ready(client, MTX_QUERY="q" * 20000)
    assert resp.status_code == 413
    assert resp.get_json()["error"] == "Request Entity Too Large"
    assert queued_jobs(r) == 0


def test_not_ready_for_an_unknown_stream_is_404(client):
    resp = client.post("/v1/hooks/mediamtx/not-ready", json={"MTX_PATH": "live/ghost/in"}, headers=H)
    assert resp.status_code == 404 and "unknown stream" in resp.get_json()["reason"]


def test_stop_hooks_mark_draining(client):
    ready(client)
    resp = client.post("/v1/hooks/mediamtx/not-ready", json={"MTX_PATH": "live/cam1/in"}, headers=H)
    assert resp.status_code == 200 and resp.get_json()["state"] == "draining"
    rec = client.get("/v1/streams/cam1").get_json()
    assert rec["state"] == "draining" and rec["draining_at"] and "not-ready" in rec["reason"]
    nginx(client, "publish", name="cam2/in")
    assert nginx(client, "publish_done", name="cam2/in").get_json()["state"] == "draining"


def test_output_publish_only_from_loopback(client, r):
    assert nginx(client, "publish", name="cam1/out", key=INTERNAL).status_code == 200
    assert nginx(client, "publish", name="cam1/out", addr="203.0.113.9", key=INTERNAL).status_code == 403
    assert nginx(client, "publish", name="cam1/out").status_code == 403  # loopback, but no key of livedub's
    assert queued_jobs(r) == 0


def test_publish_waits_for_the_reader_then_answers(redis_url, r):
    settings = app_settings(redis_url, reader_wait_s=5)
    app = create_app({"SETTINGS": settings, "TESTING": True})
    c1, c2 = app.test_client(), app.test_client()

    def reader_connects():
        time.sleep(0.4)
        assert nginx(c2, "play", key=INTERNAL).status_code == 200

    t = threading.Thread(target=reader_connects)
    start = time.monotonic()
    t.start()
    resp = nginx(c1, "publish")
    waited = time.monotonic() - start
    t.join()
    assert resp.status_code == 202
    assert 0.35 < waited < 2.0  # held until the reader, not until the 5 s bound


def test_publish_wait_is_bounded(redis_url, r):
    settings = app_settings(redis_url, reader_wait_s=0.5)
    c = create_app({"SETTINGS": settings, "TESTING": True}).test_client()
    start = time.monotonic()
    assert nginx(c, "publish").status_code == 202
    assert 0.45 < time.monotonic() - start < 2.0


def test_streams_list_get_delete(client):
    ready(client)
    listing = client.get("/v1/streams").get_json()["streams"]
    assert [s["stream_id"] for s in listing] == ["cam1"] and "segments" not in listing[0]
    assert client.get("/v1/streams/nope").status_code == 404
    assert client.get("/v1/streams/a.b").status_code == 400
    assert client.delete("/v1/streams/cam1", headers={**H, "Authorization": ""}).status_code == 401  # no secret
    resp = client.delete("/v1/streams/cam1")  # the operator token
    assert resp.status_code == 202
    rec = client.get("/v1/streams/cam1").get_json()
    assert rec["state"] == "draining" and rec["stop_requested"] is True


def test_health_and_metrics(client):
    assert client.get("/health").get_json() == {"status": "ok", "redis": "ok", "open_publishing": True}
    ready(client)
    text = client.get("/metrics").get_data(as_text=True)
    assert "flask_http_request_total" in text


def test_health_reports_redis_down():
    settings = load_settings(redis_url="redis://127.0.0.1:1/0", hook_secret=SECRET, reconcile_interval_s=0)
    c = create_app({"SETTINGS": settings}).test_client()
    resp = c.get("/health")
    assert resp.status_code == 503 and resp.get_json()["status"] == "unavailable"


def test_registry_down_gives_503_not_500(redis_url):
    settings = load_settings(redis_url="redis://127.0.0.1:1/0", hook_secret=SECRET, reconcile_interval_s=0)
    c = create_app({"SETTINGS": settings}).test_client()
    resp = ready(c)
    assert resp.status_code == 503


def test_a_publish_over_the_stream_limit_is_refused_with_the_reason(redis_url, r):
    settings = app_settings(redis_url, reader_wait_s=0, max_live_streams=1)
    client = create_app({"SETTINGS": settings, "TESTING": True}).test_client()
    assert nginx(client, "publish", name="one/in").status_code == 202
    refused = nginx(client, "publish", name="two/in")
    assert refused.status_code == 429 and "limit of 1 streams" in refused.get_json()["reason"]
    assert ready(client, path="live/three/in").status_code == 429  # MediaMTX's hook: the same limit
    assert queued_jobs(r) == 1
    assert client.get("/v1/streams/two", headers={"Authorization": f"Bearer {OPERATOR}"}).status_code == 404
