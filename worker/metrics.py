"""Every Prometheus metric livedub declares, in one module.

Workers run in many processes and hosts, so pipeline counters are aggregated through Redis: a worker
calls :func:`count` (HINCRBY on one hash), and the API's ``/metrics`` exposes the sums through
:class:`RedisCounters`. Names end in ``_total``; label values are bounded (status, reason code,
stage, queue), never a stream id.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

KEY = "livedub:metrics:counters"

# name -> (help, label names)
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "livedub_segments_total": ("Segments by final status: processed, fallback or failed.", ("status",)),
    "livedub_fallbacks_total": ("Fallback pieces by reason code.", ("reason",)),
    "livedub_late_pieces_total": ("Dubbed pieces that arrived after their deadline and were dropped.", ()),
    "livedub_publisher_stalls_total": ("Times the publisher had no piece at all at a deadline.", ()),
    "livedub_stretched_segments_total": ("Dubs sped up to fit their slot, and those also trimmed.", ("fit",)),
    "media_service_worker_segments_processed_total": ("Seed-compatible: segments processed.", ("type",)),
}
STATUSES = ("processed", "fallback", "failed")
REASONS = ("sts_failed", "sts_timeout", "sts_unreachable", "late", "no_speech", "collect_failed", "remux_failed",
           "circuit_open", "other")


def _field(name: str, labels: dict[str, str]) -> str:
    if name not in COUNTERS:
        raise KeyError(f"undeclared metric {name}")
    if set(labels) != set(COUNTERS[name][1]):
        raise ValueError(f"{name} takes labels {COUNTERS[name][1]}")
    return name + "|" + ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def count(client: redis.Redis, name: str, n: int = 1, **labels: str) -> None:
    client.hincrby(KEY, _field(name, labels), n)


def reason_code(reason: str) -> str:
    """Bound a free-text reason to one of REASONS for a label."""
    code = reason.split(":", 1)[0].strip()
    return code if code in REASONS else "other"


class RedisCounters(Collector):
    """Exposes the Redis-aggregated counters, plus live streams, on the API's /metrics."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        try:
            raw = self.client.hgetall(KEY)
            live = self.client.zcard("livedub:streams")
        except redis.RedisError:
            return
        families = {name: CounterMetricFamily(name.removesuffix("_total"), help_, labels=list(labels))
                    for name, (help_, labels) in COUNTERS.items()}
        for field, value in raw.items():
            name, _, label_text = (field.decode() if isinstance(field, bytes) else str(field)).partition("|")
            if name not in families:
                continue
            labels = dict(p.split("=", 1) for p in label_text.split(",") if p)
            families[name].add_metric([labels[k] for k in COUNTERS[name][1]], float(value))
        yield from families.values()
        g = GaugeMetricFamily("livedub_streams_known", "Streams in the registry (any state).")
        g.add_metric([], float(live))
        yield g
