"""Fuzz the hooks (hypothesis) against a real Redis: never a 5xx, nothing bad ever enqueued."""

import base64
import json

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api import create_app
from tasks.queues import INGEST, STREAM_JOB_TASK
from worker.core.naming import STREAM_ID_RE
from worker.core.settings import load_settings

pytestmark = pytest.mark.integration
SECRET = "fuzz-secret-0123456"
H = {"X-Livedub-Secret": SECRET}


@pytest.fixture(scope="module")
def client(redis_url):
    settings_ = load_settings(redis_url=redis_url, hook_secret=SECRET, reader_wait_s=0, reconcile_interval_s=0)
    return create_app({"SETTINGS": settings_, "TESTING": True}).test_client()


@pytest.fixture(scope="module")
def r(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.delete(INGEST)  # jobs other tests left on the queue
    return client


def enqueued(r) -> list[list]:
    """Take every stream job the API put on the ingest queue (the broker is this Redis): their args."""
    jobs = []
    while (raw := r.rpop(INGEST)) is not None:
        msg = json.loads(raw)
        assert msg["headers"]["task"] == STREAM_JOB_TASK
        args, _kwargs, _embed = json.loads(base64.b64decode(msg["body"]))
        jobs.append(args)
    return jobs


def check_enqueued(r, status: int, stream_id: str | None) -> None:
    """A 202 enqueued exactly one job, for a valid id; any other answer enqueued nothing."""
    jobs = enqueued(r)
    if status != 202:
        assert jobs == [], (status, jobs)
        return
    assert len(jobs) == 1 and jobs[0][0] == stream_id and STREAM_ID_RE.fullmatch(jobs[0][0]), jobs


nasty = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["../etc/passwd", "a b", "caf\u00e9", "x" * 65, "-i", "a;rm -rf", "$(id)", "%2e%2e", "", "/",
                     "live", "in", "\u0000", "a\nb"]),
)
path = st.one_of(nasty, st.builds(lambda i, d: f"live/{i}/{d}", nasty, st.sampled_from(["in", "out", "x", ""])))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mtx_path=path, source=st.text(max_size=100), query=st.text(max_size=300),
       endpoint=st.sampled_from(["ready", "not-ready"]), as_json=st.booleans())
@example(mtx_path="live/fuzzcam/in", source="rtmpConn", query="", endpoint="ready", as_json=True)
def test_mediamtx_hooks_never_5xx(client, r, mtx_path, source, query, endpoint, as_json):
    body = {"MTX_PATH": mtx_path, "MTX_SOURCE_TYPE": source, "MTX_QUERY": query}
    kwargs = {"json": body} if as_json else {"data": body}
    resp = client.post(f"/v1/hooks/mediamtx/{endpoint}", headers=H, **kwargs)
    assert resp.status_code < 500, resp.get_data(as_text=True)
    if resp.status_code >= 400:
        assert resp.get_json()["reason"]
    parts = mtx_path.strip("/").split("/")
    if resp.status_code == 202:  # a job was started: only for a valid live/<id>/in
        assert parts[0] == "live" and parts[2] == "in" and STREAM_ID_RE.fullmatch(parts[1])
    check_enqueued(r, resp.status_code, parts[1] if len(parts) == 3 else None)
    if resp.status_code == 202:  # the same hook again (a retry, a duplicate): the same job, nothing enqueued
        again = client.post(f"/v1/hooks/mediamtx/{endpoint}", headers=H, **kwargs)
        assert again.status_code == 200 and again.get_json()["job_id"] == resp.get_json()["job_id"]
        check_enqueued(r, again.status_code, None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(app=nasty, name=nasty, addr=st.text(max_size=70), extra=st.dictionaries(st.text(max_size=20),
                                                                               st.text(max_size=50), max_size=5),
       call=st.sampled_from(["publish", "publish-done", "play"]))
def test_nginx_hooks_never_5xx(client, r, app, name, addr, extra, call):
    data = {**extra, "app": app, "name": name, "addr": addr, "call": call}
    resp = client.post(f"/v1/hooks/nginx-rtmp/{call}?secret={SECRET}", data=data)
    assert resp.status_code < 500, resp.get_data(as_text=True)
    parts = f"live/{name}".strip("/").split("/")
    if resp.status_code == 202:
        assert call == "publish" and app == "live" and len(parts) == 3 and parts[2] == "in"
    check_enqueued(r, resp.status_code, parts[1] if len(parts) == 3 else None)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=3000), ctype=st.sampled_from(["application/json", "application/x-www-form-urlencoded",
                                                            "text/plain", "multipart/form-data; boundary=x"]))
def test_raw_bodies_never_5xx(client, r, raw, ctype):
    resp = client.post("/v1/hooks/mediamtx/ready", data=raw, headers={**H, "Content-Type": ctype})
    assert resp.status_code < 500
    assert resp.status_code == 202 or enqueued(r) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream_id=nasty)
def test_stream_endpoints_never_5xx(client, r, stream_id):
    for method in ("get", "delete"):
        resp = getattr(client, method)(f"/v1/streams/{stream_id}", headers=H)
        assert resp.status_code < 500
    assert enqueued(r) == []


def test_oversized_bodies_are_refused_on_every_hook(client):
    for url in ("/v1/hooks/mediamtx/ready", f"/v1/hooks/nginx-rtmp/publish?secret={SECRET}"):
        resp = client.post(url, data={"app": "live", "name": "x/in", "pad": "p" * 40000}, headers=H)
        assert resp.status_code == 413
