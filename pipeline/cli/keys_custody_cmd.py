"""`edgeline keys blast-radius | rollover | rotate-master`: the key ledger and master-key rotation.

Responsible for: arguments, help that states consequences, output as table/json/csv, one-line errors.
Not responsible for: the queries (`pipeline.db.key_ledger`) or re-sealing
(`pipeline.service.master_rotation`).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import asdict
from typing import Any

from pipeline.cli.main import EXIT_OK, CommandError

BLAST_HELP = (
    "List the units whose device keys were derived from one enrollment-group key (the key ledger each "
    "unit gets when its config is issued): how many, on which lines, issued between which dates, and each "
    "registration ID. Use it after a suspected leak of a group key: these are the units an attacker with "
    "that key could impersonate. Move them with `edgeline group rotate-key` and re-flash (rework) them."
)
ROLLOVER_HELP = (
    "Show a group-key rollover's progress: the group's current primary and secondary keys and how many "
    "units were flashed with each key version. Units on the secondary (previous) key keep working until "
    "the next rotation drops it; re-flash them (rework) to move them onto the primary. --units lists them."
)
ROTATE_MASTER_HELP = (
    "Re-seal every stored secret (individual device keys; group keys kept in the database) under the "
    "current master key. No downtime: first give every worker the new key as master key and the old one "
    "as master_key_previous_file (they then read both), run this, then remove master_key_previous_file. "
    "Safe to run again (it re-seals only what is not yet under the current key). Writes an audit record."
)


def register_custody(keys_sub: Any) -> None:
    """Add the key-custody subcommands to the `keys` group."""
    blast = keys_sub.add_parser(
        "blast-radius", help="units derived from one group key", description=BLAST_HELP
    )
    blast.add_argument("--group", help="enrollment group ID (default: setting enrollment_group_id)")
    blast.add_argument(
        "--version", required=True, help="the key's fingerprint (see `group show`), or primary / secondary"
    )
    blast.add_argument("--format", choices=["table", "json", "csv"], default="table")
    blast.set_defaults(func=_blast_radius)
    rollover = keys_sub.add_parser("rollover", help="group-key rollover progress", description=ROLLOVER_HELP)
    rollover.add_argument("--group", help="enrollment group ID (default: setting enrollment_group_id)")
    rollover.add_argument("--units", action="store_true", help="list every unit not yet on the primary key")
    rollover.add_argument("--format", choices=["table", "json"], default="table")
    rollover.set_defaults(func=_rollover)
    rotate = keys_sub.add_parser(
        "rotate-master",
        help="re-seal stored keys under the current master key",
        description=ROTATE_MASTER_HELP,
    )
    rotate.add_argument(
        "--create-token-key",
        action="store_true",
        help="first create pkcs11_master_key_label as a non-extractable AES-256 key in the token if missing",
    )
    rotate.set_defaults(func=_rotate_master)


def _group_fingerprints(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    from pipeline.cli.admin import admin_session

    with admin_session(args) as session:
        group_id = args.group or session.ctx.settings.group_id()
        with session.ctx.uow_factory() as uow:
            record = uow.groups.get(group_id)
        if record is None:
            raise CommandError(f"enrollment group {group_id!r} is not in the database: check --group")
        store = session.ctx.group_key_store()
        slots = {
            "primary": store.fingerprint(record.sealed_primary_key, group_id, "primary"),
            "secondary": store.fingerprint(record.sealed_secondary_key, group_id, "secondary"),
        }
    return group_id, slots


def _database(args: argparse.Namespace) -> Any:
    from pipeline.cli.common import settings_from
    from pipeline.db.session import Database

    return Database(settings_from(args).resolved_database_url())


def _blast_radius(args: argparse.Namespace) -> int:
    from pipeline.db.key_ledger import key_use, units_from_key

    group_id, slots = _group_fingerprints(args)
    version = slots.get(args.version, args.version)
    db = _database(args)
    try:
        use = key_use(db, f"group:{group_id}", version)
        units = units_from_key(db, f"group:{group_id}", version)
        if args.format == "json":
            payload = {
                **asdict(use),
                "group": group_id,
                "registration_ids": [u.registration_id for u in units],
            }
            print(json.dumps(payload, default=str, indent=2))
        elif args.format == "csv":
            writer = csv.writer(sys.stdout)
            writer.writerow(
                ["registration_id", "serial", "line", "station", "state", "key_store", "config_issued_at"]
            )
            for unit in units:
                writer.writerow(list(asdict(unit).values()))
        else:
            _print_use(group_id, use, slots)
            for unit in units:
                issued = unit.config_issued_at or ""
                print(f"  {unit.registration_id}  {unit.line}/{unit.station}  {unit.state}  {issued}")
    finally:
        db.dispose()
    return EXIT_OK


def _print_use(group_id: str, use: Any, slots: dict[str, str]) -> None:
    role = next((slot for slot, fp in slots.items() if fp == use.fingerprint), "no longer in DPS")
    lines = ", ".join(f"{line} ({n})" for line, n in sorted(use.lines.items())) or "none"
    store = use.key_store or "unknown"
    print(f"group {group_id} key {use.fingerprint} ({role}, {store} store): {use.units} unit(s)")
    print(f"  lines: {lines}")
    if use.units:
        print(f"  configs issued {use.first_issued} .. {use.last_issued}")


def _rollover(args: argparse.Namespace) -> int:
    from pipeline.db.key_ledger import key_versions, units_from_key

    group_id, slots = _group_fingerprints(args)
    db = _database(args)
    try:
        uses = key_versions(db, f"group:{group_id}")
        behind = [use for use in uses if use.fingerprint != slots["primary"]]
        if args.format == "json":
            payload: dict[str, Any] = {"group": group_id, **slots, "versions": [asdict(u) for u in uses]}
            if args.units:
                payload["units_not_on_primary"] = [
                    asdict(unit) for use in behind for unit in units_from_key(db, use.source, use.fingerprint)
                ]
            print(json.dumps(payload, default=str, indent=2))
            return EXIT_OK
        print(f"group {group_id}: primary {slots['primary']}, secondary {slots['secondary']}")
        for use in uses:
            _print_use(group_id, use, slots)
        waiting = sum(use.units for use in behind)
        print(
            f"{waiting} unit(s) not yet on the primary key"
            + (": re-flash them to move them" if waiting else "")
        )
        if args.units:
            for use in behind:
                for unit in units_from_key(db, use.source, use.fingerprint):
                    where = f"{unit.line}/{unit.station}"
                    print(f"  {unit.registration_id}  key {use.fingerprint}  {where}  {unit.state}")
    finally:
        db.dispose()
    return EXIT_OK


def _rotate_master(args: argparse.Namespace) -> int:
    from pipeline.cli.common import settings_from
    from pipeline.config import ConfigError
    from pipeline.db.session import Database
    from pipeline.keystore.custody import master_sealer, open_token
    from pipeline.service.actors import cli_identity
    from pipeline.service.context import utcnow
    from pipeline.service.master_rotation import rotate_master_key

    settings = settings_from(args)
    token = (
        open_token(settings) if settings.pkcs11_master_key_label or settings.key_store == "pkcs11" else None
    )
    try:
        if args.create_token_key:
            if token is None or not settings.pkcs11_master_key_label:
                raise ConfigError("--create-token-key needs pkcs11_master_key_label and the token settings")
            from pipeline.keystore.pkcs11 import create_master_key

            create_master_key(token, settings.pkcs11_master_key_label)
        sealer = master_sealer(settings, token)
        db = Database(settings.resolved_database_url())
        try:
            report = rotate_master_key(
                db.uow,
                sealer,
                utcnow,
                group_keys_sealed=settings.key_store == "database",
                actor=cli_identity(),
                on_progress=lambda done: print(f"  {done} device key(s) re-sealed so far", file=sys.stderr),
            )
        finally:
            db.dispose()
    finally:
        if token is not None:
            token.close()
    print(
        f"re-sealed {report.device_keys} device key(s) and {report.group_keys} group key(s) under master key "
        f"{report.new_key_id}; once every worker runs with the new key, remove master_key_previous_file"
    )
    return EXIT_OK
