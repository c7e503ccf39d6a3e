"""The STS service's own /metrics, read from the server's state at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class StsCollector(Collector):
    """The STS service's own /metrics: in-flight fragments, queue depth, streams, fragments by status and
    backpressure events, read from the server's state at scrape time."""

    def __init__(self, server: object) -> None:
        self.server = server

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        srv: Any = self.server
        sessions = srv.sessions
        g = GaugeMetricFamily("livedub_sts_inflight_fragments", "Fragments accepted and not yet answered.")
        g.add_metric([], float(sum(s.inflight for s in sessions.values())))
        yield g
        q = GaugeMetricFamily("livedub_sts_queue_depth", "Fragments waiting for an engine thread.")
        q.add_metric([], float(srv.queue.size))
        yield q
        st = GaugeMetricFamily("livedub_sts_streams", "Streams initialised on the service.")
        st.add_metric([], float(len(sessions)))
        yield st
        stats: dict[str, int] = srv.stats
        frags = CounterMetricFamily("livedub_sts_fragments", "Fragments answered, by status.", labels=["status"])
        for status in ("success", "partial", "failed"):
            frags.add_metric([status], float(stats.get(status, 0)))
        yield frags
        bp = CounterMetricFamily("livedub_sts_backpressure_events", "Backpressure events sent, by action.",
                                 labels=["action"])
        for action in ("slow_down", "pause"):
            bp.add_metric([action], float(stats.get(f"bp_{action}", 0)))
        yield bp
