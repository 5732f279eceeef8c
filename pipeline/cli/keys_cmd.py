"""`edgeline keys derive`: the article's openssl step, as one command.

Its runner stays in this module: it needs only the pure domain modules, which are cheap to import.
"""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.cli.keys_custody_cmd import register_custody
from pipeline.cli.main import EXIT_OK, CommandError
from pipeline.domain.identity import IdentityError, validate_registration_id
from pipeline.domain.keys import KeyFormatError, SecretKey, derive_device_key


def register(sub: Any) -> None:
    """Add the `keys` command group."""
    keys = sub.add_parser(
        "keys",
        help="symmetric key tools: derive, key ledger, master-key rotation",
        description="Derive a device key (needs nothing else); list the units derived from a group key "
        "(blast radius); follow a group-key rollover; re-seal stored keys under a new master key.",
    )
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="SUBCOMMAND", required=True)
    derive = keys_sub.add_parser(
        "derive",
        help="print a group member's device key",
        description="Print base64(HMAC-SHA256(base64-decode(KEY), REGISTRATION_ID)): the device key of a "
        "unit "
        "in a symmetric-key enrollment group (docs/azure-notes.md). Only the key is printed on stdout.",
    )
    derive.add_argument(
        "--key", required=True, help="the enrollment group's primary or secondary key (base64)"
    )
    derive.add_argument("--registration-id", required=True, help="the unit's DPS registration ID")
    derive.add_argument(
        "--no-check",
        action="store_true",
        help="skip edgeline's registration-ID rule (lowercase letters, digits, '-')",
    )
    derive.set_defaults(func=_derive)
    register_custody(keys_sub)


def _derive(args: argparse.Namespace) -> int:
    try:
        group_key = SecretKey.from_base64(args.key, what="--key")
        if not args.no_check:
            validate_registration_id(args.registration_id)
    except (KeyFormatError, IdentityError) as exc:
        raise CommandError(str(exc), exit_code=2) from None
    print(derive_device_key(group_key, args.registration_id).reveal_base64())
    return EXIT_OK
