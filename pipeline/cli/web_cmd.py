"""`edgeline web`: the audit API + dashboard server, and `edgeline web token create|list|revoke`.

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


def register(sub: Any) -> None:
    """Add the `web` command and its `token` subcommands."""
    parser = sub.add_parser(
        "web",
        help="serve the audit API, the live dashboard and /metrics",
        description="Serve the read-only audit API (/api/v1, OpenAPI at /api/v1/openapi.json), the dashboard "
        "(/) and Prometheus metrics (/metrics) over the configured database. Every request needs a token: "
        "create one with `edgeline web token create --role viewer|auditor|admin`.",
    )
    parser.add_argument("--listen", metavar="HOST:PORT", help="default: setting web_listen, 127.0.0.1:8080")
    parser.add_argument("--signing-key", metavar="FILE", help="Ed25519 private key signing record exports")
    parser.set_defaults(func=_serve)
    web_sub = parser.add_subparsers(dest="web_command", metavar="SUBCOMMAND")
    token = web_sub.add_parser("token", help="manage API tokens").add_subparsers(
        dest="token_command", metavar="ACTION", required=True
    )
    create = token.add_parser("create", help="create a token; prints it as the last line")
    create.add_argument("--role", choices=api_tokens.ROLES, required=True)
    create.add_argument("--name", default="cli", help="who or what the token is for")
    create.add_argument("--listen", metavar="HOST:PORT", help="for the printed dashboard link")
    create.set_defaults(func=_token_create)
    token.add_parser("list", help="list tokens (never shows them)").set_defaults(func=_token_list)
    revoke = token.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=_token_revoke)


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
    from pipeline.cli.report_cmd import schedule_shift_reports
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
