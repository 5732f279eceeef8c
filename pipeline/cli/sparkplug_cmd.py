"""`edgeline sparkplug`: publish the line's state in Sparkplug B (also part of `edgeline up` when enabled)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from pipeline.cli.common import settings_from, stop_event_on_signals
from pipeline.cli.main import EXIT_OK, CommandError

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    """Add the `sparkplug` command."""
    parser = sub.add_parser(
        "sparkplug",
        help="publish the line's state (units per state, yield, last failure) as a Sparkplug B edge node",
        description="Run only the Sparkplug B publisher: the line (EDGELINE_LINE) is the edge node "
        "(EDGELINE_SPARKPLUG_EDGE_NODE_ID), its stations are devices, in group EDGELINE_SPARKPLUG_GROUP_ID, "
        "on "
        "EDGELINE_SPARKPLUG_MQTT_URL (default EDGELINE_MQTT_URL), reading counts from EDGELINE_DATABASE_URL "
        "every EDGELINE_SPARKPLUG_INTERVAL_SECONDS, until SIGINT/SIGTERM. `edgeline up` runs the same "
        "publisher when sparkplug_enabled = true.",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pipeline.bus.ports import BusError
    from pipeline.db.errors import DatabaseUnavailable, SchemaMissing
    from pipeline.db.line_state import SqlLineState
    from pipeline.db.session import Database
    from pipeline.sparkplug.wiring import build_sparkplug

    settings = settings_from(args)
    database = Database(settings.resolved_database_url())
    publisher = build_sparkplug(settings, database)
    stop = stop_event_on_signals()
    try:
        database.ping()
        SqlLineState(database, settings.line).snapshot()  # a missing schema is one line here, not a log flood
        publisher.start()
    except (BusError, DatabaseUnavailable, SchemaMissing) as exc:
        database.dispose()
        raise CommandError(str(exc)) from None
    log.info("edgeline sparkplug: publishing as %r", publisher)
    stop.wait()
    publisher.stop()
    database.dispose()
    return EXIT_OK
