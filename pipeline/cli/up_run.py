"""The runner of `edgeline up` (arguments: pipeline.cli.up_cmd); imported only when `up` runs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from pipeline.bootstrap import build_pipeline
from pipeline.bus.ports import BusError
from pipeline.cli.common import stop_event_on_signals
from pipeline.cli.main import EXIT_OK, CommandError
from pipeline.config import load_settings_reporting, raise_if_any
from pipeline.config_check import problems_for
from pipeline.db.errors import DatabaseUnavailable, SchemaMissing
from pipeline.db.session import Database

log = logging.getLogger(__name__)


def up(args: argparse.Namespace) -> int:
    """Run the workers until SIGINT/SIGTERM, or until another process takes over this client id."""
    config = Path(args.config) if getattr(args, "config", None) else None
    settings, problems = load_settings_reporting(config, client_id=args.client_id, instance=args.instance)
    raise_if_any(problems + problems_for(settings, "up"))  # every problem at once, one line each
    pipeline = build_pipeline(settings)
    metrics_server = _serve_metrics(args.metrics_listen or settings.metrics_listen, pipeline.db)
    stop = stop_event_on_signals()
    fatal: list[str] = []

    def on_fatal(reason: str) -> None:  # e.g. another process took over this client id
        fatal.append(reason)
        stop.set()

    pipeline.bus.on_fatal(on_fatal)
    sparkplug = None
    if settings.sparkplug_enabled:  # imported only when enabled (pysparkplug is optional to install)
        from pipeline.sparkplug.wiring import build_sparkplug

        sparkplug = build_sparkplug(settings, pipeline.db)
    try:
        pipeline.db.ping()
        pipeline.start()
        if sparkplug is not None:
            sparkplug.start()
    except (BusError, DatabaseUnavailable, SchemaMissing) as exc:
        pipeline.stop()
        raise CommandError(str(exc)) from None
    except Exception:
        pipeline.stop()  # e.g. a key sealed under another master key: main prints the one line
        raise
    log.info(
        "edgeline up: workers running (mode %s, line %s); Ctrl-C to stop",
        settings.enrollment_mode,
        settings.line,
    )
    stop.wait()
    log.info("edgeline up: stopping")
    if sparkplug is not None:
        sparkplug.stop()
    pipeline.stop()
    if metrics_server is not None:
        metrics_server.shutdown()
    if fatal:
        raise CommandError(fatal[0])
    return EXIT_OK


def _serve_metrics(listen: str, db: Database) -> Any:
    """Install the Prometheus sink and serve /metrics on `listen`; None if not asked."""
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
