"""The Metrics port's Prometheus adapter: names, labels, DB gauges, and its own /metrics server."""

from __future__ import annotations

import httpx
from conftest import free_port

from pipeline import metrics
from pipeline.metrics.prometheus import DbGauges, PrometheusMetrics


def test_counters_histograms_and_db_gauges_in_the_exposition() -> None:
    sink = PrometheusMetrics(lambda: DbGauges({"assigned": 7, "keyed": 2}, 3, 12.5))
    sink.stage_completed("scanned", 0.02)
    sink.stage_failed("flash", retryable=False)
    sink.dps_operation("PUT", 200)
    sink.dps_operation("PUT", 429)
    sink.retry("dps")
    sink.bus_reconnect()
    sink.dead_letter("invalid")
    sink.reconciler_redrive("keyed")
    body, content_type = sink.exposition()
    text = body.decode()
    assert content_type.startswith("text/plain")
    for line in (
        'edgeline_stage_total{outcome="ok",stage="scanned"} 1.0',
        'edgeline_stage_total{outcome="failed",stage="flash"} 1.0',
        'edgeline_stage_seconds_bucket{le="0.05",stage="scanned"} 1.0',
        'edgeline_dps_operations_total{operation="PUT",status="429"} 1.0',
        'edgeline_dps_throttled_total{operation="PUT"} 1.0',
        'edgeline_retries_total{stage="dps"} 1.0',
        "edgeline_bus_reconnects_total 1.0",
        'edgeline_dead_letters_total{reason="invalid"} 1.0',
        'edgeline_reconciler_redrives_total{state="keyed"} 1.0',
        'edgeline_units{state="assigned"} 7.0',
        "edgeline_outbox_pending 3.0",
        "edgeline_outbox_lag_seconds 12.5",
    ):
        assert line in text, line


def test_serve_answers_scrapes_over_http() -> None:
    sink = PrometheusMetrics()
    port = free_port()
    server = sink.serve("127.0.0.1", port)
    try:
        sink.retry("enroll")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert 'edgeline_retries_total{stage="enroll"} 1.0' in text
    finally:
        server.shutdown()


def test_default_sink_is_a_no_op_and_install_replaces_it() -> None:
    assert type(metrics.current()) is metrics.Metrics
    sink = PrometheusMetrics()
    metrics.install(sink)
    try:
        metrics.current().bus_reconnect()
        assert "edgeline_bus_reconnects_total 1.0" in sink.exposition()[0].decode()
    finally:
        metrics.install(metrics.NO_METRICS)
