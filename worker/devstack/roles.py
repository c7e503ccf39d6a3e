"""The roles `livedub up` can run on a host, and its --only and --scale options. Pure functions."""

from __future__ import annotations

from worker.core.queues import ALL_QUEUES

SERVICES = ("redis", "store", "sts-service", "api", "media-server", "flower")
ROLES = SERVICES + ALL_QUEUES
# One machine, by default: everything but the S3 store (segments stay in a local directory) and Flower.
DEFAULT_ROLES = frozenset(ROLES) - {"store", "flower"}


def parse_roles(text: str) -> frozenset[str]:
    roles = frozenset(r.strip() for r in text.split(",") if r.strip())
    unknown = roles - set(ROLES)
    if unknown or not roles:
        raise ValueError(f"unknown role(s) {sorted(unknown)}: choose from {', '.join(ROLES)}")
    return roles


def parse_scale(items: tuple[str, ...]) -> dict[str, int]:
    scale = {}
    for item in items:
        pool, _, n = item.partition("=")
        if pool not in ALL_QUEUES or not n.isdigit() or not 1 <= int(n) <= 32:
            raise ValueError(f"--scale {item!r}: expected POOL=N with POOL one of {', '.join(ALL_QUEUES)}, N 1-32")
        scale[pool] = int(n)
    return scale
