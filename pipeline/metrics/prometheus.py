"""Prometheus adapter of the `Metrics` port (the only module importing prometheus-client).

Counters and histograms live in a private registry (so two apps in one test process do not clash);
gauges that describe the database (units per state, outbox backlog) are read from a callback at scrape
time, so every replica reports the same truth and nothing has to be kept in step.

Responsible for: metric names, labels, buckets, the text exposition and the standalone /metrics server.
Not responsible for: deciding when something is counted (the workers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import start_http_server as _start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline.metrics import Metrics

STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


@dataclass(frozen=True, slots=True)
class DbGauges:
    """What the database says at scrape time."""

    units_by_state: dict[str, int] = field(default_factory=dict)
    outbox_pending: int = 0
    outbox_oldest_seconds: float = 0.0


class _DbCollector(Collector):
    def __init__(self, read: Callable[[], DbGauges]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauges = self._read()
        states = GaugeMetricFamily("edgeline_units", "Units per state (in flight and done)", labels=["state"])
        for state, count in sorted(gauges.units_by_state.items()):
            states.add_metric([state], count)
        yield states
        yield GaugeMetricFamily(
            "edgeline_outbox_pending", "Outbox messages not yet published", value=gauges.outbox_pending
        )
        yield GaugeMetricFamily(
            "edgeline_outbox_lag_seconds",
            "Age of the oldest unpublished outbox message",
            value=gauges.outbox_oldest_seconds,
        )


class PrometheusMetrics(Metrics):
    """`Metrics` recorded into a private Prometheus registry."""

    def __init__(self, db_gauges: Callable[[], DbGauges] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._stage = Counter("edgeline_stage", "Units through a stage", ["stage", "outcome"], registry=r)
        self._latency = Histogram(
            "edgeline_stage_seconds", "Stage handling time", ["stage"], buckets=STAGE_BUCKETS, registry=r
        )
        self._dps = Counter(
            "edgeline_dps_operations", "DPS calls by status", ["operation", "status"], registry=r
        )
        self._throttled = Counter("edgeline_dps_throttled", "DPS 429 answers", ["operation"], registry=r)
        self._retries = Counter("edgeline_retries", "Transient failures retried", ["stage"], registry=r)
        self._reconnects = Counter("edgeline_bus_reconnects", "MQTT reconnects", registry=r)
        self._dead = Counter("edgeline_dead_letters", "Messages dead-lettered", ["reason"], registry=r)
        self._redrives = Counter("edgeline_reconciler_redrives", "Units re-driven", ["state"], registry=r)
        if db_gauges is not None:
            r.register(_DbCollector(db_gauges))

    def stage_completed(self, stage: str, seconds: float) -> None:
        self._stage.labels(stage, "ok").inc()
        self._latency.labels(stage).observe(seconds)

    def stage_failed(self, stage: str, *, retryable: bool) -> None:
        self._stage.labels(stage, "retryable" if retryable else "failed").inc()

    def dps_operation(self, operation: str, status: int) -> None:
        self._dps.labels(operation, str(status)).inc()
        if status == 429:
            self._throttled.labels(operation).inc()

    def retry(self, stage: str) -> None:
        self._retries.labels(stage).inc()

    def bus_reconnect(self) -> None:
        self._reconnects.inc()

    def dead_letter(self, reason: str) -> None:
        self._dead.labels(reason).inc()

    def reconciler_redrive(self, state: str) -> None:
        self._redrives.labels(state).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def serve(self, host: str, port: int) -> WSGIServer:
        """Serve /metrics on HOST:PORT from a daemon thread (for `edgeline up`); returns the server."""
        server, _thread = _start_http_server(port, addr=host, registry=self.registry)
        return server
