from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import make_video, redis_server, s3_server

# Speech mode is livedub's default. The tests written for fixed fragments (the seed's mode, still a
# per-stream option) run in it explicitly: settings made here and every stack a test starts inherit this.
# The speech-mode tests set LIVEDUB_SEGMENTATION=speech themselves.
os.environ.setdefault("LIVEDUB_SEGMENTATION", "fixed")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest files first: ``make test`` hands whole files to two workers in this order
    (``--no-loadscope-reorder``), so that no long file starts while the other worker is nearly done. A file
    of long scenarios says about how long it takes in its ``slow(seconds=...)`` mark; tests keep their order."""
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)

    def longest_first(tests: list[pytest.Item]) -> float:
        mark = tests[0].get_closest_marker("slow")
        return -float(mark.kwargs.get("seconds", 0)) if mark else 0.0

    items[:] = [t for tests in sorted(files.values(), key=longest_first) for t in tests]


@pytest.fixture(autouse=True)
def no_reconciler_left_running() -> Iterator[None]:
    """An API made in a test must not leave its reconciler loop running: it would fail other tests'
    streams in the shared Redis (make the app with ``reconcile_interval_s=0``)."""
    yield
    left = [t for t in threading.enumerate() if t.name == "livedub-reconciler" and t.is_alive()]
    assert not left, "a test left the API's reconciler loop running"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    with s3_server() as url:
        yield url


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def video_8s(media_dir: Path) -> Path:
    return make_video(media_dir / "av8.flv", 8.0)


@pytest.fixture(scope="session")
def video_20s(media_dir: Path) -> Path:
    return make_video(media_dir / "av20.flv", 20.0)
