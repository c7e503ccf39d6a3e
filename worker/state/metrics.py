"""Every Prometheus metric livedub declares, in one module.

Workers run in many processes and on many hosts, so pipeline metrics are aggregated through Redis: a
worker calls :meth:`Metrics.count` or :meth:`Metrics.observe` (HINCRBY/HINCRBYFLOAT on one hash), and
the API's ``/metrics`` exposes the sums through :class:`RedisCollector`, with queue depths and stream
states read at scrape time. Names end in ``_total`` or ``_seconds``; label values are bounded (status,
reason code, stage, queue, state), never a stream id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from worker.core.models import StreamState
from worker.core.queues import ALL_QUEUES

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
    "livedub_publishes_refused_total": ("Publishes refused before any job started, by reason.", ("reason",)),
    "livedub_media_access_refused_total": ("Media-server publishes and reads refused, by action and reason.",
                                           ("action", "reason")),
    "livedub_api_auth_refused_total": ("Stream API requests refused for a missing or wrong token.", ("status",)),
    "livedub_limit_stops_total": ("Streams stopped for breaking a limit on their input, by limit.", ("limit",)),
    "livedub_ingest_handovers_total": ("Ingest runs handed over by a worker shutting down (a redeploy).", ()),
    "livedub_publisher_handovers_total": ("Publishers handed over at a piece boundary by a worker shutting down.",
                                          ()),
    "livedub_units_total": ("Speech units by outcome (processed, fallback, failed) and reason code.",
                            ("status", "reason")),
    "media_service_worker_segments_processed_total": ("Seed-compatible: segments processed.", ("type",)),
}
STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
HISTOGRAMS: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]] = {
    "livedub_stage_duration_seconds": ("Per-segment time in each stage.", ("stage",), STAGE_BUCKETS),
    "livedub_glass_to_glass_seconds": ("Input media time to the publisher putting it out.", (),
                                       (4.0, 5.0, 6.0, 6.5, 7.0, 7.5, 8.0, 9.0, 10.0, 12.0, 15.0, 20.0)),
    "livedub_input_gap_seconds": ("Input lost between an ingest run and the one that went on.", (),
                                  (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)),
    "livedub_dub_lag_seconds": ("Speech mode: how long after its unit's start each dub starts.", (),
                                (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)),
    # Absolute: OpenMetrics histograms with negative buckets carry no _sum/_count. The signed values
    # are on each stream's record (last_av_offset_start_ms / _end_ms).
    "livedub_output_av_offset_seconds": ("|audio - video| at the start and end of each published piece.",
                                         ("edge",), (0.001, 0.005, 0.01, 0.015, 0.02, 0.025, 0.04, 0.1)),
}
QUEUES = ALL_QUEUES


def _labels(name: str, declared: tuple[str, ...], labels: dict[str, str]) -> str:
    if set(labels) != set(declared):
        raise ValueError(f"{name} takes labels {declared}")
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


class Metrics:
    """Where the pipeline's workers count and observe: one Redis hash each for counters and histograms.

    Label values come from enums (status, reason code, stage, action), never a stream id."""

    def __init__(self, client: redis.Redis) -> None:
        self._r = client

    def count(self, name: str, n: int = 1, **labels: str) -> None:
        if name not in COUNTERS:
            raise KeyError(f"undeclared metric {name}")
        self._r.hincrby(KEY, f"{name}|{_labels(name, COUNTERS[name][1], labels)}", n)

    def observe(self, name: str, value: float, **labels: str) -> None:
        """One histogram observation: the bucket it falls in, the sum and the count (one round trip)."""
        if name not in HISTOGRAMS:
            raise KeyError(f"undeclared metric {name}")
        _, declared, buckets = HISTOGRAMS[name]
        base = f"{name}|{_labels(name, declared, labels)}"
        bucket = next((str(b) for b in buckets if value <= b), "+Inf")
        pipe = self._r.pipeline(transaction=False)
        pipe.hincrby(HKEY, f"{base}|le={bucket}", 1)
        pipe.hincrbyfloat(HKEY, f"{base}|sum", value)
        pipe.hincrby(HKEY, f"{base}|count", 1)
        pipe.execute()

    @staticmethod
    def keys() -> tuple[str, str]:
        return KEY, HKEY

    def snapshot(self) -> tuple[dict[str, float], dict[str, float], list[int]]:
        """(counters, histogram parts, queue depths in QUEUES order), read in one round trip."""
        pipe = self._r.pipeline(transaction=False)
        pipe.hgetall(KEY)
        pipe.hgetall(HKEY)
        for q in QUEUES:
            pipe.llen(q)
        counters, hist, *depths = pipe.execute()
        return ({_text(k): float(v) for k, v in counters.items()}, {_text(k): float(v) for k, v in hist.items()},
                [int(d) for d in depths])


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _parse_labels(text: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in text.split(",") if p)


class RedisCollector(Collector):
    """Exposes the Redis-aggregated metrics, queue depths and streams by state on the API's /metrics."""

    def __init__(self, metrics: Metrics, states: Callable[[], dict[str, int]]) -> None:
        self.metrics = metrics
        self.states = states  # streams by state, from the registry

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        try:
            counters, hist, depths = self.metrics.snapshot()
            states = self.states()
        except redis.RedisError:
            return
        yield from self._counters(counters)
        yield from self._histograms(hist)
        g = GaugeMetricFamily("livedub_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"])
        for q, depth in zip(QUEUES, depths, strict=True):
            g.add_metric([q], float(depth))
        yield g
        s = GaugeMetricFamily("livedub_streams", "Streams in the registry by state.", labels=["state"])
        for state in StreamState:
            s.add_metric([state.value], float(states.get(state.value, 0)))
        yield s

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
