import pytest

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
