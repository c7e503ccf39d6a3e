from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import make_video, redis_server, s3_server


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
