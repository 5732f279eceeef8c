"""`edgeline up`: the central workers and scheduler against the configured broker, database and DPS."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from pipeline.bootstrap import build_pipeline
from pipeline.bus.ports import BusError
from pipeline.cli.common import settings_from, stop_event_on_signals
from pipeline.cli.main import EXIT_OK, CommandError
from pipeline.db.errors import DatabaseUnavailable, SchemaMissing
from pipeline.db.session import Database

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    """Add the `up` command."""
    parser = sub.add_parser(
        "up",
        help="run the central workers (keyer, enroller, configurer, recorder) and the scheduler",
        description="Run the pipeline's workers against the configured broker (EDGELINE_MQTT_URL), database "
        "(EDGELINE_DATABASE_URL, migrated with `edgeline db upgrade`) and DPS "
        "(EDGELINE_DPS_CONNECTION_STRING, "
        "EDGELINE_DPS_ID_SCOPE), until SIGINT/SIGTERM. Several copies may run: with a broker that supports "
        "shared subscriptions they split the work. Needs EDGELINE_MASTER_KEY or EDGELINE_MASTER_KEY_FILE.",
    )
    parser.add_argument(
        "--client-id",
        help="MQTT client id (default: edgeline-worker-<hostname>); keep it stable "
        "across restarts so messages queued while down are delivered",
    )
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus /metrics here (default: setting metrics_listen; empty = off)",
    )
    parser.set_defaults(func=_up)


def _up(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    pipeline = build_pipeline(settings, client_id=args.client_id)
    metrics_server = _serve_metrics(args.metrics_listen or settings.metrics_listen, pipeline.db)
    stop = stop_event_on_signals()
    try:
        pipeline.db.ping()
        pipeline.start()
    except (BusError, DatabaseUnavailable, SchemaMissing) as exc:
        pipeline.stop()
        raise CommandError(str(exc)) from None
    log.info(
        "edgeline up: workers running (mode %s, line %s); Ctrl-C to stop",
        settings.enrollment_mode,
        settings.line,
    )
    stop.wait()
    log.info("edgeline up: stopping")
    pipeline.stop()
    if metrics_server is not None:
        metrics_server.shutdown()
    return EXIT_OK


def _serve_metrics(listen: str, db: Database) -> Any:
    """Install the Prometheus sink and serve /metrics on `listen` (web issue #12); None if not asked."""
    if not listen:
        return None
    from pipeline.metrics import install
    from pipeline.metrics.prometheus import PrometheusMetrics
    from pipeline.web.app import db_gauges
    from pipeline.web.server import parse_listen

    try:
        host, port = parse_listen(listen, "--metrics-listen")
    except ValueError as exc:
        raise CommandError(str(exc), exit_code=2) from None
    sink = PrometheusMetrics(lambda: db_gauges(db))
    install(sink)
    try:
        server = sink.serve(host, port)
    except OSError as exc:
        raise CommandError(f"--metrics-listen {listen}: {exc.strerror}") from None
    log.info("edgeline up: Prometheus metrics on http://%s:%d/metrics", host, port)
    return server
