"""The runners of this command (arguments: pipeline.cli.audit_sign_cmd); imported only when it runs.

`edgeline audit keygen | export-signed | verify-export`: the site key and signed audit exports.

Responsible for: arguments and one-line results. `verify-export` works offline (no database, no
settings): it needs only the export file and the site's public key.
Not responsible for: the export format (pipeline.exports.signed_export) or keys (pipeline.crypto).
"""

from __future__ import annotations

import argparse
import sys

from pipeline.cli.common import settings_from
from pipeline.cli.main import EXIT_FAILURE, EXIT_OK, CommandError
from pipeline.crypto.site_signing import SigningKeyError, generate_key_pair, load_public_key, load_signer
from pipeline.db import audit_api_queries
from pipeline.db.errors import DatabaseUnavailable, SchemaMissing
from pipeline.db.session import Database
from pipeline.exports.signed_export import signed_export_lines, verify_export


def _keygen(args: argparse.Namespace) -> int:
    public = args.public_key or args.private_key.with_name(args.private_key.name + ".pub")
    try:
        generate_key_pair(args.private_key, public)
    except SigningKeyError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot write the key pair: {exc.strerror} ({exc.filename})") from None
    print(f"private key {args.private_key} (0600, keep it on this site); public key {public}")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    try:
        signer = load_signer(args.private_key)
    except SigningKeyError as exc:
        raise CommandError(str(exc)) from None
    db = Database(settings_from(args).resolved_database_url())
    try:
        with open(args.output, "w", encoding="utf-8") as stream:
            records = audit_api_queries.stream_records(db)
            stream.writelines(signed_export_lines(records, signer, scope={"since": None, "until": None}))
    except (DatabaseUnavailable, SchemaMissing) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"--output {args.output}: {exc.strerror}") from None
    finally:
        db.dispose()
    print(f"signed export written to {args.output}", file=sys.stderr)
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    try:
        public = load_public_key(args.public_key)
        with open(args.file, encoding="utf-8") as stream:
            check = verify_export(stream, public)
    except SigningKeyError as exc:
        raise CommandError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {args.file}: {getattr(exc, 'strerror', None) or exc}") from None
    if check.ok:
        print(f"export ok: {check.records} record(s), signature and hash chain verified")
        return EXIT_OK
    where = f" (record {check.first_bad_id})" if check.first_bad_id is not None else ""
    print(f"export TAMPERED{where}: {check.reason}", file=sys.stderr)
    return EXIT_FAILURE
