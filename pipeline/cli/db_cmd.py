"""`edgeline db upgrade` / `edgeline db current`: apply and inspect the schema migrations.

Responsible for: the arguments (the runners are in pipeline.cli.db_run, imported on use).
Not responsible for: creating the PostgreSQL server or database (the operator's job).
"""

from __future__ import annotations

from typing import Any

RUN = "pipeline.cli.db_run"


def register(sub: Any) -> None:
    """Add the `db` command group."""
    parser = sub.add_parser(
        "db",
        help="database schema migrations",
        description="Apply and inspect edgeline's schema migrations on the database of database_url "
        "(EDGELINE_DATABASE_URL; default: a SQLite file in the state directory).",
    )
    db_sub = parser.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    upgrade = db_sub.add_parser(
        "upgrade",
        help="apply migrations (default: up to the newest)",
        description="Apply schema migrations to the database of database_url "
        "(EDGELINE_DATABASE_URL; default: a SQLite file in the state directory).",
    )
    upgrade.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    upgrade.set_defaults(func=f"{RUN}:upgrade")
    current = db_sub.add_parser(
        "current",
        help="print the database's schema revision",
        description="Print the schema revision of the database of database_url and whether it is the "
        "newest this edgeline ships (if not: run `edgeline db upgrade`). Changes nothing.",
    )
    current.set_defaults(func=f"{RUN}:current")
