"""`edgeline up`: the central workers and scheduler against the configured broker, database and DPS."""

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
        help="MQTT client id (setting client_id, EDGELINE_CLIENT_ID); default "
        "edgeline-worker-<hostname>-<instance>, the instance being --instance or else the lowest slot "
        "free on this host (1, 2, ...). Every process needs its own: a second process with the same "
        "id takes the session over and the first one exits with an error",
    )
    parser.add_argument(
        "--instance",
        help="instance name or number on this host (setting instance, EDGELINE_INSTANCE), e.g. systemd's "
        "%%i: gives a stable client id, so a restarted instance gets back what was queued for it",
    )
    parser.set_defaults(func=_up)


def _up(args: argparse.Namespace) -> int:
    config = Path(args.config) if getattr(args, "config", None) else None
    settings, problems = load_settings_reporting(config, client_id=args.client_id, instance=args.instance)
    raise_if_any(problems + problems_for(settings, "up"))  # every problem at once, one line each
    pipeline = build_pipeline(settings)
    stop = stop_event_on_signals()
    fatal: list[str] = []

    def on_fatal(reason: str) -> None:  # e.g. another process took over this client id
        fatal.append(reason)
        stop.set()

    pipeline.bus.on_fatal(on_fatal)
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
    if fatal:
        raise CommandError(fatal[0])
    return EXIT_OK
