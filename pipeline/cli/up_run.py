"""The runner of `edgeline up` (arguments: pipeline.cli.up_cmd); imported only when `up` runs."""

from __future__ import annotations

import argparse
import logging

from pipeline.bootstrap import build_pipeline
from pipeline.bus.ports import BusError
from pipeline.cli.common import settings_from, stop_event_on_signals
from pipeline.cli.main import EXIT_OK, CommandError
from pipeline.db.errors import DatabaseUnavailable, SchemaMissing

log = logging.getLogger(__name__)


def up(args: argparse.Namespace) -> int:
    """Run the workers until SIGINT/SIGTERM."""
    settings = settings_from(args)
    pipeline = build_pipeline(settings, client_id=args.client_id)
    stop = stop_event_on_signals()
    try:
        pipeline.db.ping()
        pipeline.start()
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
    pipeline.stop()
    return EXIT_OK
