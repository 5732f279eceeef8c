"""The runners of this command (arguments: pipeline.cli.web_cmd); imported only when it runs.

`edgeline web`: the audit API + dashboard server, and `edgeline web token create|list|revoke`.

Responsible for: arguments and output. `token create` prints the new token as its last line (scripts
take `tail -1`), together with the dashboard link that carries it once.
Not responsible for: the app (pipeline.web) or token storage (pipeline.db.api_tokens).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.cli.common import settings_from
from pipeline.cli.main import EXIT_OK, CommandError
from pipeline.config import Settings
from pipeline.crypto.site_signing import SigningKeyError, SiteSigner, load_signer
from pipeline.db import api_tokens
from pipeline.db.errors import DatabaseUnavailable, SchemaMissing
from pipeline.db.session import Database

log = logging.getLogger(__name__)


@contextmanager
def _database(settings: Settings) -> Iterator[Database]:
    db = Database(settings.resolved_database_url())
    try:
        yield db
    except (DatabaseUnavailable, SchemaMissing) as exc:
        raise CommandError(str(exc)) from None
    finally:
        db.dispose()


def _listen(args: argparse.Namespace, settings: Settings) -> tuple[str, int]:
    from pipeline.web.server import parse_listen

    try:
        return parse_listen(args.listen or settings.web_listen)
    except ValueError as exc:
        raise CommandError(str(exc), exit_code=2) from None


def _serve(args: argparse.Namespace) -> int:
    from pipeline.web.server import serve

    settings = settings_from(args)
    host, port = _listen(args, settings)
    signer = _signer(args.signing_key or settings.web_signing_key_file)
    stuck = settings.web_stuck_seconds or settings.reconcile_stuck_seconds
    with _database(settings) as db:
        db.ping()
        reports = _shift_reports(db, settings)
        log.info("edgeline web: serving http://%s:%d/ (API /api/v1, metrics /metrics)", host, port)
        try:
            serve(db, host=host, port=port, stuck_seconds=stuck, signer=signer)
        finally:
            reports.stop()
    return EXIT_OK


def _shift_reports(db: Database, settings: Settings) -> Any:
    from pipeline.cli.report_run import schedule_shift_reports
    from pipeline.reports.shift import ShiftError

    try:
        return schedule_shift_reports(db, settings)
    except ShiftError as exc:
        raise CommandError(str(exc), exit_code=2) from None


def _signer(path: str) -> SiteSigner | None:
    if not path:
        return None
    try:
        return load_signer(Path(path))
    except SigningKeyError as exc:
        raise CommandError(str(exc)) from None


def _token_create(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    host, port = _listen(args, settings)
    with _database(settings) as db:
        info, token = api_tokens.create_token(db, name=args.name[:64], role=args.role)
    print(f"token {info.id} ({info.role}, {info.name}) created; it is shown only now")
    print(f"dashboard: http://{host}:{port}/?token={token}")
    print(token)
    return EXIT_OK


def _token_list(args: argparse.Namespace) -> int:
    with _database(settings_from(args)) as db:
        for info, created, revoked in api_tokens.list_tokens(db):
            state = f"revoked {revoked:%Y-%m-%d %H:%M}" if revoked else "live"
            print(f"{info.id}\t{info.role}\t{info.name}\tcreated {created:%Y-%m-%d %H:%M}\t{state}")
    return EXIT_OK


def _token_revoke(args: argparse.Namespace) -> int:
    with _database(settings_from(args)) as db:
        if not api_tokens.revoke_token(db, args.id):
            raise CommandError(f"no live token with id {args.id} (see `edgeline web token list`)")
    print(f"token {args.id} revoked")
    return EXIT_OK
