"""`edgeline audit keygen | export-signed | verify-export`: the site key and signed audit exports.

Responsible for: arguments and one-line results. `verify-export` works offline (no database, no
settings): it needs only the export file and the site's public key.
Not responsible for: the export format (pipeline.exports.signed_export) or keys (pipeline.crypto).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RUN = "pipeline.cli.audit_sign_run"


def register_subcommands(audit_sub: Any) -> None:
    """Add keygen, export-signed and verify-export to the `audit` command group."""
    keygen = audit_sub.add_parser(
        "keygen",
        help="create the site's Ed25519 key pair for signed exports",
        description="Write a new Ed25519 key pair: the private key (PEM, mode 0600) signs exports; give the "
        "public key (PEM) to auditors for `edgeline audit verify-export`.",
    )
    keygen.add_argument("--private-key", type=Path, required=True, metavar="FILE")
    keygen.add_argument("--public-key", type=Path, metavar="FILE", help="default: the private key + .pub")
    keygen.set_defaults(func=f"{RUN}:_keygen")
    export = audit_sub.add_parser(
        "export-signed",
        help="export audit records as JSON Lines signed with the site key",
        description="Write every audit record as JSON Lines followed by a trailer that names the hash-chain "
        "span it covers, signed with the site's Ed25519 key (`edgeline audit keygen`). Anyone with the "
        "public key can check it offline with `edgeline audit verify-export`.",
    )
    export.add_argument("--private-key", type=Path, required=True, metavar="FILE")
    export.add_argument("--output", type=Path, required=True, metavar="FILE")
    export.set_defaults(func=f"{RUN}:_export")
    verify = audit_sub.add_parser(
        "verify-export",
        help="check a signed export offline; names the first edited, removed or inserted record",
        description="Check a file made by `edgeline audit export-signed` against the site's public key, "
        "without the database: the signature, each record's hash and its link to the previous one. Exits "
        "non-zero and names the first record that was edited, removed or inserted.",
    )
    verify.add_argument("file", type=Path, metavar="FILE")
    verify.add_argument("--public-key", type=Path, required=True, metavar="FILE")
    verify.set_defaults(func=f"{RUN}:_verify")
