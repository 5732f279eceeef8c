"""The runners of `edgeline db` (arguments: pipeline.cli.db_cmd); imported only when a db command runs."""

from __future__ import annotations

import argparse

from pipeline.cli.common import settings_from
from pipeline.cli.main import EXIT_OK, CommandError
from pipeline.db import migrate
from pipeline.db.engine import mask_url
from pipeline.db.errors import DatabaseUnavailable


def _url(args: argparse.Namespace) -> str:
    return settings_from(args).resolved_database_url()


def upgrade(args: argparse.Namespace) -> int:
    """Apply migrations up to args.revision and say what changed."""
    url = _url(args)
    try:
        before = migrate.current(url)
        migrate.upgrade(url, args.revision)
        after = migrate.current(url)
    except (DatabaseUnavailable, migrate.MigrationsNotFound) as exc:
        raise CommandError(str(exc)) from None
    where = mask_url(url)
    if before == after:
        print(f"{where}: already at revision {after or 'base'}, nothing to do")
    else:
        print(f"{where}: upgraded from {before or 'empty database'} to {after}")
    return EXIT_OK


def current(args: argparse.Namespace) -> int:
    """Print the database's revision and whether it is the newest."""
    url = _url(args)
    try:
        revision = migrate.current(url)
    except DatabaseUnavailable as exc:
        raise CommandError(str(exc)) from None
    head = migrate.head()
    status = "up to date" if revision == head else f"behind: newest is {head}, run `edgeline db upgrade`"
    print(f"{mask_url(url)}: revision {revision or 'none (never migrated)'} ({status})")
    return EXIT_OK
