"""The `Metrics` port: what workers report for Prometheus (issue #12). The default does nothing.

Workers receive a `Metrics` and call it at the points below; the Prometheus adapter
(pipeline.metrics.prometheus) is the only module that imports prometheus-client. Label values are
short, bounded vocabularies (stage names, HTTP status codes), never unit identities.
"""

from __future__ import annotations


class Metrics:
    """Counters and timings of the pipeline; every method is a no-op here (tests, tools, no /metrics)."""

    def stage_completed(self, stage: str, seconds: float) -> None:
        """A stage handler finished a unit successfully after `seconds`."""

    def stage_failed(self, stage: str, *, retryable: bool) -> None:
        """A stage failed a unit."""

    def dps_operation(self, operation: str, status: int) -> None:
        """One DPS call answered with HTTP `status` (429 counts as throttled too)."""

    def retry(self, stage: str) -> None:
        """A transient failure is being retried."""

    def bus_reconnect(self) -> None:
        """The MQTT client reconnected."""

    def dead_letter(self, reason: str) -> None:
        """A message went to the dead-letter topic; `reason` is a short category."""

    def reconciler_redrive(self, state: str) -> None:
        """The reconciler re-drove a unit stuck in `state`."""


NO_METRICS = Metrics()

_installed: Metrics = NO_METRICS


def install(metrics: Metrics) -> None:
    """Make `metrics` the process's sink (`edgeline up --metrics-listen` does, once, at start)."""
    global _installed
    _installed = metrics


def current() -> Metrics:
    """The process's metrics sink (the no-op one unless `install` was called).

    A process-wide sink rather than a Context field: the hooks sit in the consumer, the DPS HTTP layer,
    the reconciler and the bus adapter, and one call at each keeps those modules' signatures unchanged.
    """
    return _installed
