"""Stream keys and API tokens against a real Redis: creating a stream, the media servers' checks (nginx-rtmp's
hooks, MediaMTX's authMethod http with the exact JSON it posts), rotation, revocation, private outputs, and
the roles. The same attacks against real nginx-rtmp and ffmpeg: tests/integration/test_stream_keys_stack.py."""

import logging

import pytest
import redis

from api import create_app
from worker.core.settings import load_settings

pytestmark = pytest.mark.integration
SECRET = "hook-secret-0123456789"
OPERATOR, VIEWER, INTERNAL = "operator-token-0123", "viewer-token-0123", "internal-key-0123"


@pytest.fixture
def app(redis_url):
    redis.Redis.from_url(redis_url).flushdb()
    settings = load_settings(redis_url=redis_url, hook_secret=SECRET, reconcile_interval_s=0, reader_wait_s=0,
                             operator_token=OPERATOR, viewer_token=VIEWER, internal_key=INTERNAL)
    return create_app({"SETTINGS": settings, "TESTING": True})


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def create(client, sid="cam", **body):
    return client.post("/v1/streams", json={"stream_id": sid, **body}, headers=bearer(OPERATOR))


def nginx(client, call, name, **form):
    data = {"app": "live", "name": name, "addr": "127.0.0.1", "clientid": "7", "call": call, "type": "live", **form}
    return client.post(f"/v1/hooks/nginx-rtmp/{call.replace('_', '-')}?secret={SECRET}", data=data)


def mediamtx(client, action, path, query="", **fields):
    """The body MediaMTX's auth manager marshals (internal/auth/manager.go, authenticateHTTP)."""
    body = {"ip": "172.18.0.7", "user": "", "password": "", "token": "", "action": action, "path": path,
            "protocol": "rtmp", "id": "0b5a4f3e-2b7c-4d55-9a43-6f4f0b3f8e11", "query": query,
            "userAgent": "", **fields}
    return client.post("/v1/auth/mediamtx", json=body)


def refused(app):
    text = app.test_client().get("/metrics").data.decode()
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
            if line.startswith("livedub_media_access_refused_total{")}


def test_an_operator_creates_a_stream_and_gets_its_key_once(app):
    c = app.test_client()
    resp = create(c, target_language="fr")
    assert resp.status_code == 201
    body = resp.get_json()
    key = body["publish_key"]
    assert len(key) >= 32 and body["ingest_url"].endswith(f"/live//cam/in?key={key}")
    assert body["options"] == {"target_language": "fr"}
    assert create(c).status_code == 409
    stored = redis.Redis.from_url(app.config["LIVEDUB"].redis_url).hget("livedub:keys", "cam").decode()
    assert key not in stored  # hashed
    got = c.get("/v1/streams/cam", headers=bearer(VIEWER)).get_json()
    assert got["state"] == "created" and "publish_key" not in got


def test_the_api_needs_a_token_and_only_an_operator_changes_things(app):
    c = app.test_client()
    assert c.get("/v1/streams").status_code == 401
    assert c.get("/v1/streams", headers=bearer("guess")).status_code == 401
    assert c.get("/v1/streams", headers={"X-Livedub-Secret": SECRET}).status_code == 401  # not a token
    assert c.get("/v1/streams?token=" + OPERATOR).status_code == 401  # never from the query
    assert c.get("/v1/streams", headers=bearer(VIEWER)).status_code == 200
    assert c.post("/v1/streams", json={"stream_id": "v"}, headers=bearer(VIEWER)).status_code == 403
    assert c.delete("/v1/streams/v", headers=bearer(VIEWER)).status_code == 403
    assert c.get("/health").status_code == 200 and c.get("/metrics").status_code == 200  # stay open
    assert 'status="401"' in c.get("/metrics").data.decode()


def test_nginx_rtmp_refuses_a_publish_without_the_stream_key_the_same_way_for_every_stranger(app, caplog):
    c = app.test_client()
    key = create(c).get_json()["publish_key"]
    caplog.set_level(logging.DEBUG)
    no_key = nginx(c, "publish", "cam/in")
    wrong = nginx(c, "publish", "cam/in", key="x" * 32)
    unknown = nginx(c, "publish", "nosuch/in", key=key)
    assert no_key.status_code == wrong.status_code == unknown.status_code == 403
    assert no_key.get_json() == wrong.get_json() == unknown.get_json()
    assert c.get("/v1/streams", headers=bearer(VIEWER)).get_json()["streams"] == []  # no job started
    assert refused(app) == {'livedub_media_access_refused_total{action="publish",reason="bad_key"}': 3.0}
    assert nginx(c, "publish", "cam/in", key=key).status_code == 202
    assert key not in caplog.text


def test_a_rotated_key_replaces_the_old_one_and_a_revoked_stream_cannot_publish(app):
    c = app.test_client()
    old = create(c).get_json()["publish_key"]
    new = c.post("/v1/streams/cam/key", headers=bearer(OPERATOR)).get_json()["publish_key"]
    assert new != old
    assert nginx(c, "publish", "cam/in", key=old).status_code == 403
    assert mediamtx(c, "publish", "live/cam/in", f"key={new}").status_code == 200
    assert c.delete("/v1/streams/cam/key", headers=bearer(OPERATOR)).status_code == 200
    assert mediamtx(c, "publish", "live/cam/in", f"key={new}").status_code == 403
    assert c.post("/v1/streams/cam/key", headers=bearer(OPERATOR)).status_code == 404


def test_mediamtx_auth_checks_the_path_the_action_and_the_key(app):
    c = app.test_client()
    key = create(c).get_json()["publish_key"]
    assert mediamtx(c, "publish", "live/cam/in", f"key={key}").status_code == 200
    assert mediamtx(c, "publish", "live/cam/in", "key=nope").status_code == 403
    assert mediamtx(c, "publish", "live/cam/in", "", password=key).status_code == 200  # as rtmp://u:key@
    # the output: only livedub publishes it; anyone reads it
    assert mediamtx(c, "publish", "live/cam/out", f"key={key}").status_code == 403
    assert mediamtx(c, "publish", "live/cam/out", f"key={INTERNAL}").status_code == 200
    assert mediamtx(c, "read", "live/cam/out").status_code == 200
    # the input: only livedub's reader reads it
    assert mediamtx(c, "read", "live/cam/in").status_code == 403
    assert mediamtx(c, "read", "live/cam/in", f"key={INTERNAL}").status_code == 200
    assert mediamtx(c, "api", "").status_code == 403
    assert mediamtx(c, "publish", "other/path").status_code == 403
    assert c.post("/v1/auth/mediamtx", data="not json").status_code == 400


def test_a_private_streams_output_needs_its_play_key(app):
    c = app.test_client()
    body = create(c, private=True).get_json()
    assert body["play_key"] and body["output_url"].endswith(f"?key={body['play_key']}")
    assert nginx(c, "play", "cam/out").status_code == 403
    assert nginx(c, "play", "cam/out", key=body["publish_key"]).status_code == 403
    assert nginx(c, "play", "cam/out", key=body["play_key"]).status_code == 200
    assert mediamtx(c, "read", "live/cam/out", f"key={body['play_key']}").status_code == 200


def test_open_publishing_is_explicit_and_shown(redis_url):
    settings = load_settings(redis_url=redis_url, hook_secret=SECRET, reconcile_interval_s=0, reader_wait_s=0,
                             operator_token=OPERATOR, internal_key=INTERNAL, open_publishing=True)
    c = create_app({"SETTINGS": settings, "TESTING": True}).test_client()
    assert c.get("/health").get_json()["open_publishing"] is True
    assert nginx(c, "publish", "anyone/in").status_code == 202
    assert nginx(c, "publish", "anyone/out").status_code == 403  # the output stays livedub's


def test_speech_options_are_taken_and_bad_ones_refused_with_a_reason(app):
    c = app.test_client()
    made = create(c, "talk", segmentation="speech", latency_s=5)
    assert made.status_code == 201 and made.json["options"] == {"segmentation": "speech", "latency_s": 5.0}
    far = create(c, "far", latency_s=120)
    assert far.status_code == 400 and "latency_s" in far.json["reason"]
    odd = create(c, "odd", segmentation="words")
    assert odd.status_code == 400 and "segmentation" in odd.json["reason"]
    # in the publish URL's query too: refused before any job
    key = create(c, "q").json["publish_key"]
    refused = nginx(c, "publish", "q/in", key=key, latency_s="1")
    assert refused.status_code == 400 and "latency_s" in refused.get_data(as_text=True)
