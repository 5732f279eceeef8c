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
    parser.set_defaults(func=_up)


def _up(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    pipeline = build_pipeline(settings, client_id=args.client_id)
    if settings.online_check and pipeline.ctx.hub is None:  # edge: the liveness job reads hub twins
        raise CommandError(
            "online_check needs iot_hub_connection_strings (EDGELINE_IOT_HUB_CONNECTION_STRINGS) to read "
            "the $edgeAgent module twins, or set online_check = false"
        )
    stop = stop_event_on_signals()
    sparkplug = None
    if settings.sparkplug_enabled:  # edge: imported only when enabled (pysparkplug is optional to import)
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
    return EXIT_OK
