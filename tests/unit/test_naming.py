import pytest

from worker.core.models import MediaMTXHook, query_pairs
from worker.core.naming import (
    InvalidStreamPath,
    input_path,
    output_path,
    parse_nginx_name,
    parse_path,
    rtmp_url,
    validate_stream_id,
)


@pytest.mark.parametrize("good", ["a", "Cam_1", "x-y", "A" * 64, "0"])
def test_valid_ids(good):
    assert validate_stream_id(good) == good


@pytest.mark.parametrize(
    "bad", ["", "A" * 65, "../etc", "a/b", "a b", "caf\u00e9", "a;rm", "a\n", "a.b", "$(x)", "-i"[1:] + "/"]
)
def test_invalid_ids_are_refused(bad):
    with pytest.raises(InvalidStreamPath, match="invalid stream id"):
        validate_stream_id(bad)


def test_parse_path_in_and_out():
    p = parse_path("live/cam1/in")
    assert (p.stream_id, p.direction, p.path) == ("cam1", "in", "live/cam1/in")
    assert parse_path("/live/cam1/out/").direction == "out"


@pytest.mark.parametrize("bad", ["live/cam1", "other/cam1/in", "live/cam1/in/x", "live/../in", "live/a b/in",
                                 "live/cam1/sideways"])
def test_parse_path_refuses_other_paths(bad):
    with pytest.raises(InvalidStreamPath):
        parse_path(bad)


def test_nginx_name():
    assert parse_nginx_name("live", "cam1/in").stream_id == "cam1"
    with pytest.raises(InvalidStreamPath, match="application"):
        parse_nginx_name("vod", "cam1/in")


def test_paths_and_urls():
    assert input_path("c") == "live/c/in"
    assert output_path("c") == "live/c/out"
    assert rtmp_url("rtmp://h:1935/", "c", "in") == "rtmp://h:1935/live//c/in"
    with pytest.raises(InvalidStreamPath):
        rtmp_url("rtmp://h", "../x", "in")
    with pytest.raises(InvalidStreamPath):
        rtmp_url("rtmp://h", "c", "sideways")


@pytest.mark.parametrize("mtx_query", [
    # MediaMTX >= 1.18.1: url.QueryEscape(query) (what Go's QueryEscape gives for this query, by hand)
    "target_language%3Dfr%26segment_seconds%3D4%26voice_profile%3Dfemale",
    # older releases: the query as it came
    "target_language=fr&segment_seconds=4&voice_profile=female",
])
def test_mediamtx_query_is_read_escaped_once_or_as_it_came(mtx_query):
    hook = MediaMTXHook(MTX_PATH="live/cam1/in", MTX_QUERY=mtx_query)
    assert hook.query() == {"target_language": "fr", "segment_seconds": "4", "voice_profile": "female"}


def test_query_pairs_keep_escaped_values_and_spaces():
    # the publish URL's query "title=a+b%26c&x=1" (a value with a space and an "&"), escaped once more
    assert query_pairs("title%3Da%2Bb%2526c%26x%3D1") == {"title": "a b&c", "x": "1"}
    assert query_pairs("title=a+b%26c&x=1") == {"title": "a b&c", "x": "1"}
    assert query_pairs("") == {}
