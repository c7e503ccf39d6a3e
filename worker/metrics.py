"""Every Prometheus metric livedub declares, in one module.

Workers run in many processes and on many hosts, so pipeline metrics are aggregated through Redis: a
worker calls :func:`count` or :func:`observe` (HINCRBY/HINCRBYFLOAT on one hash), and the API's
``/metrics`` exposes the sums through :class:`RedisCollector`, with queue depths and stream states
read at scrape time. Names end in ``_total`` or ``_seconds``; label values are bounded (status,
reason code, stage, queue, state), never a stream id.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

KEY = "livedub:metrics:counters"
HKEY = "livedub:metrics:histograms"

# name -> (help, label names)
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "livedub_segments_total": ("Segments by final status: processed, fallback or failed.", ("status",)),
    "livedub_fallbacks_total": ("Fallback pieces by reason code.", ("reason",)),
    "livedub_late_pieces_total": ("Dubbed pieces that arrived after their deadline and were dropped.", ()),
    "livedub_publisher_stalls_total": ("Times the publisher had no piece at all at a deadline.", ()),
    "livedub_sts_backpressure_total": ("Backpressure events received from the STS service.", ("action",)),
    "livedub_sts_circuit_open_total": ("Segments not sent because the STS circuit breaker was open.", ()),
    "media_service_worker_segments_processed_total": ("Seed-compatible: segments processed.", ("type",)),
}
STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
HISTOGRAMS: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]] = {
    "livedub_stage_duration_seconds": ("Per-segment time in each stage.", ("stage",), STAGE_BUCKETS),
    "livedub_glass_to_glass_seconds": ("Input media time to the publisher putting it out.", (),
                                       (4.0, 5.0, 6.0, 6.5, 7.0, 7.5, 8.0, 9.0, 10.0, 12.0, 15.0, 20.0)),
    # Absolute: OpenMetrics histograms with negative buckets carry no _sum/_count. The signed values
    # are on each stream's record (last_av_offset_start_ms / _end_ms).
    "livedub_output_av_offset_seconds": ("|audio - video| at the start and end of each published piece.",
                                         ("edge",), (0.001, 0.005, 0.01, 0.015, 0.02, 0.025, 0.04, 0.1)),
}
REASONS = ("sts_failed", "sts_timeout", "sts_unreachable", "late", "collect_failed", "remux_failed",
           "circuit_open", "other")
QUEUES = ("ingest", "sts", "collect", "remux", "publish")
STATES = ("starting", "live", "draining", "ended", "failed")


def _labels(name: str, declared: tuple[str, ...], labels: dict[str, str]) -> str:
    if set(labels) != set(declared):
        raise ValueError(f"{name} takes labels {declared}")
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def count(client: redis.Redis, name: str, n: int = 1, **labels: str) -> None:
    if name not in COUNTERS:
        raise KeyError(f"undeclared metric {name}")
    client.hincrby(KEY, f"{name}|{_labels(name, COUNTERS[name][1], labels)}", n)


def observe(client: redis.Redis, name: str, value: float, **labels: str) -> None:
    """One histogram observation: the bucket it falls in, the sum and the count (one round trip)."""
    if name not in HISTOGRAMS:
        raise KeyError(f"undeclared metric {name}")
    _, declared, buckets = HISTOGRAMS[name]
    base = f"{name}|{_labels(name, declared, labels)}"
    bucket = next((str(b) for b in buckets if value <= b), "+Inf")
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(HKEY, f"{base}|le={bucket}", 1)
    pipe.hincrbyfloat(HKEY, f"{base}|sum", value)
    pipe.hincrby(HKEY, f"{base}|count", 1)
    pipe.execute()


def reason_code(reason: str) -> str:
    """Bound a free-text reason to one of REASONS for a label."""
    code = reason.split(":", 1)[0].strip()
    return code if code in REASONS else "other"


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _parse_labels(text: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in text.split(",") if p)


class RedisCollector(Collector):
    """Exposes the Redis-aggregated metrics, queue depths and streams by state on the API's /metrics."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        try:
            counters = {_text(k): float(v) for k, v in self.client.hgetall(KEY).items()}
            hist = {_text(k): float(v) for k, v in self.client.hgetall(HKEY).items()}
            pipe = self.client.pipeline(transaction=False)
            for q in QUEUES:
                pipe.llen(q)
            depths = pipe.execute()
            states = self._states()
        except redis.RedisError:
            return
        yield from self._counters(counters)
        yield from self._histograms(hist)
        g = GaugeMetricFamily("livedub_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"])
        for q, depth in zip(QUEUES, depths, strict=True):
            g.add_metric([q], float(depth))
        yield g
        s = GaugeMetricFamily("livedub_streams", "Streams in the registry by state.", labels=["state"])
        for state in STATES:
            s.add_metric([state], float(states.get(state, 0)))
        yield s

    def _states(self) -> dict[str, int]:
        ids = self.client.zrange("livedub:streams", 0, -1)
        pipe = self.client.pipeline(transaction=False)
        for sid in ids:
            pipe.hget(f"livedub:stream:{_text(sid)}", "state")
        out: dict[str, int] = {}
        for state in pipe.execute():
            if state is not None:
                out[_text(state)] = out.get(_text(state), 0) + 1
        return out

    @staticmethod
    def _counters(raw: dict[str, float]) -> Iterator[CounterMetricFamily]:
        families = {name: CounterMetricFamily(name.removesuffix("_total"), help_, labels=list(labels))
                    for name, (help_, labels) in COUNTERS.items()}
        for field, value in raw.items():
            name, _, label_text = field.partition("|")
            if name in families:
                labels = _parse_labels(label_text)
                families[name].add_metric([labels[k] for k in COUNTERS[name][1]], value)
        yield from families.values()

    @staticmethod
    def _histograms(raw: dict[str, float]) -> Iterator[HistogramMetricFamily]:
        for name, (help_, declared, buckets) in HISTOGRAMS.items():
            fam = HistogramMetricFamily(name.removesuffix("_seconds") + "_seconds", help_, labels=list(declared))
            series: dict[str, dict[str, float]] = {}
            for field, value in raw.items():
                fname, label_text, part = (field.split("|") + ["", ""])[:3]
                if fname == name:
                    series.setdefault(label_text, {})[part] = value
            for label_text, parts in series.items():
                labels = _parse_labels(label_text)
                cumulative, out = 0.0, []
                for b in (*buckets, float("inf")):
                    key = "le=+Inf" if b == float("inf") else f"le={b}"
                    cumulative += parts.get(key, 0.0)
                    out.append(("+Inf" if b == float("inf") else str(b), cumulative))
                fam.add_metric([labels[k] for k in declared], out, parts.get("sum", 0.0))
            yield fam


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
