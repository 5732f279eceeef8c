"""`edgeline up`: the central workers and scheduler against the configured broker, database and DPS.

Responsible for: the arguments (the runner is pipeline.cli.up_run, imported on use).
"""

from __future__ import annotations

from typing import Any


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
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus /metrics here (default: setting metrics_listen; empty = off)",
    )
    parser.set_defaults(func="pipeline.cli.up_run:up")
