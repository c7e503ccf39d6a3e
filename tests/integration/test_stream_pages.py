"""A stream's record as the API serves it, against a real Redis: a stream hours old has thousands of
segments and units, so a read returns the newest of each and says how many there are; `livedub dub` pages
through them all (over real HTTP)."""

import threading

import pytest
import redis
from werkzeug.serving import make_server

from api import create_app
from tests.integration.test_hooks_api import OPERATOR, app_settings
from worker.cli.dub import whole_record
from worker.core.paging import DEFAULT_LIMIT
from worker.core.segments import Segment
from worker.core.speech import CutKind
from worker.core.units import Unit
from worker.state.registry import StreamRegistry
from worker.state.units import UnitBook

pytestmark = pytest.mark.integration
SEGMENTS, UNITS = 700, 620
AUTH = {"Authorization": f"Bearer {OPERATOR}"}


@pytest.fixture
def app(redis_url):
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    reg = StreamRegistry(r)
    reg.start("long", "rtmp://127.0.0.1/live/long/in")
    book = UnitBook(reg)
    for seq in range(SEGMENTS):
        reg.add_segment("long", Segment(sequence=seq, start_s=2.0 * seq, end_s=2.0 * seq + 2, file=f"seg{seq}"), 1)
    for seq in range(UNITS):
        book.add("long", Unit(sequence=seq, start_s=3.0 * seq, end_s=3.0 * seq + 2.5, cut=CutKind.PAUSE))
    return create_app({"SETTINGS": app_settings(redis_url), "TESTING": True})


def sequences(items):
    return [i["sequence"] for i in items]


def test_a_long_streams_record_holds_its_newest_segments_and_units_and_their_totals(app):
    client = app.test_client()
    rec = client.get("/v1/streams/long", headers=AUTH).get_json()
    assert rec["state"] == "starting" and rec["segment_count"] == SEGMENTS
    assert (rec["segments_total"], rec["units_total"]) == (SEGMENTS, UNITS)
    assert sequences(rec["segments"]) == list(range(SEGMENTS - DEFAULT_LIMIT, SEGMENTS))
    assert sequences(rec["units"]) == list(range(UNITS - DEFAULT_LIMIT, UNITS))
    fields = client.get("/v1/streams/long?limit=0", headers=AUTH).get_json()
    assert fields["segments"] == [] and fields["units"] == [] and fields["segment_count"] == SEGMENTS
    assert (fields["segments_total"], fields["units_total"]) == (SEGMENTS, UNITS)
    page = client.get("/v1/streams/long?limit=50&after_segment=99&after_unit=610", headers=AUTH).get_json()
    assert sequences(page["segments"]) == list(range(100, 150))
    assert sequences(page["units"]) == list(range(611, UNITS))
    listed = client.get("/v1/streams", headers=AUTH).get_json()["streams"]
    assert [s["stream_id"] for s in listed] == ["long"] and "segments" not in listed[0]


@pytest.mark.parametrize("query, says", [("limit=all", "limit must be a whole number"),
                                         ("limit=5001", "limit must be between 0 and 5000"),
                                         ("after_unit=-7", "after_unit must be between -1")])
def test_a_bad_page_is_400_with_the_reason(app, query, says):
    resp = app.test_client().get(f"/v1/streams/long?{query}", headers=AUTH)
    assert resp.status_code == 400 and says in resp.get_json()["reason"]


def test_livedub_dub_pages_through_every_segment_and_unit(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        rec = whole_record(f"http://127.0.0.1:{server.server_port}", "long", AUTH, page_size=128)
    finally:
        server.shutdown()
        thread.join(5)
    assert sequences(rec["segments"]) == list(range(SEGMENTS))
    assert sequences(rec["units"]) == list(range(UNITS))
    assert rec["state"] == "starting" and rec["segments_total"] == SEGMENTS
