"""LIVEDUB_STORE_URL: the forms livedub accepts, and the ones it refuses with a reason."""

from pathlib import Path

import pytest

from worker.core.store_url import ObjectLocation, StoreUrlError, parse_store_url
from worker.state.store import check_key, sibling


def test_a_file_url_is_a_directory():
    assert parse_store_url("file:///var/lib/livedub") == Path("/var/lib/livedub")


def test_an_s3_url_carries_endpoint_bucket_prefix_and_credentials():
    loc = parse_store_url("s3+http://AK:s%2Fecret@10.0.0.1:9000/livedub/segments/prod")
    assert loc == ObjectLocation(endpoint="10.0.0.1:9000", secure=False, bucket="livedub",
                                 prefix="segments/prod/", access_key="AK", secret_key="s/ecret")
    assert parse_store_url(loc.url()) == loc  # the complete URL round-trips, credentials included
    assert "AK" not in loc.url(with_credentials=False)


def test_s3_means_tls_on_443_by_default():
    loc = parse_store_url("s3://store.example.com/bucket1")
    assert isinstance(loc, ObjectLocation)
    assert (loc.endpoint, loc.secure, loc.prefix, loc.access_key) == ("store.example.com:443", True, "", None)


@pytest.mark.parametrize("url, why", [
    ("ftp://x/y", "expected file"),
    ("file://host/path", "absolute path"),
    ("s3:///bucket", "no endpoint"),
    ("s3://h/BAD_bucket", "not a valid bucket"),
    ("s3://h/bucket/../etc", "may not contain"),
    ("s3://h/bucket/a b", "may hold only"),
])
def test_bad_store_urls_are_refused_with_a_reason(url, why):
    with pytest.raises(StoreUrlError, match=why):
        parse_store_url(url)


@pytest.mark.parametrize("key", ["../x/y", "s/j1/../../etc", "s/j-1/x", "s/j1", "/s/j1/x", "s/j1/a/b/c", "s/j1/.."])
def test_keys_that_leave_a_job_are_refused(key):
    with pytest.raises(ValueError):
        check_key(key)


def test_sibling_keys_stay_in_the_same_part():
    assert sibling("s/j1/part2/orig_00003.pcm", "fit_00003.pcm") == "s/j1/part2/fit_00003.pcm"
