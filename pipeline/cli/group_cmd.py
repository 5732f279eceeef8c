"""`edgeline group create|show|rotate-key`: the product's symmetric-key enrollment group.

Responsible for: arguments, help texts that state the consequences, and printing results (key
fingerprints only, never keys).
Not responsible for: the operations themselves (pipeline.service.groups) or wiring (pipeline.bootstrap).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pipeline.cli.admin import admin_session
from pipeline.cli.main import EXIT_OK
from pipeline.service.groups import GroupView, create_group, rotate_group_key, show_group

ROTATE_HELP = (
    "Rotate the group key without breaking flashed devices. DPS accepts a device key derived from either "
    "of the group's two keys, and edgeline derives device keys from the primary. Rotation moves the "
    "current primary into the secondary slot (devices flashed so far keep working), puts a new random "
    "key in as primary (units configured from now on get keys derived from it) and drops the old "
    "secondary. The first rotation drops only the initial secondary, which no device uses. A later "
    "rotation drops the key that was primary before the previous rotation: every device flashed before "
    "that rotation and not re-flashed since then can no longer provision (DPS answers 401). edgeline "
    "counts those units and refuses unless --force is given. DPS is updated with If-Match on its ETag; "
    "a concurrent change in DPS stops the rotation."
)


def register(sub: Any) -> None:
    """Add the `group` command group."""
    group = sub.add_parser(
        "group",
        help="the product's DPS enrollment group (group mode)",
        description="Manage the symmetric-key enrollment group of the configured product "
        "(enrollment_group_id, default edgeline-{product}). Needs the database, the master key and "
        "the DPS connection string.",
    )
    group_sub = group.add_subparsers(dest="group_command", metavar="SUBCOMMAND", required=True)
    create = group_sub.add_parser(
        "create",
        help="create the group keys and the DPS group (idempotent)",
        description="Generate the group's two keys if the database has none (stored only sealed), and "
        "make DPS hold the group with exactly these keys. Running it again changes nothing. If DPS "
        "already has the group with other keys, nothing is changed and the command fails: an operator "
        "must decide which keys are right (devices may be flashed with either).",
    )
    create.add_argument(
        "--key-store",
        choices=["database", "pkcs11"],
        help="where the new group's keys live (default: setting key_store). pkcs11: generated inside the "
        "HSM, read once to register them with DPS, then made non-extractable; device keys are derived in "
        "the HSM from then on (needs pkcs11_module, pkcs11_token_label and the PIN)",
    )
    create.set_defaults(func=_create)
    show = group_sub.add_parser(
        "show",
        help="show the group in DPS and the database (key fingerprints only)",
        description="Print the group's provisioning status, ETag, IoT Edge flag, allocation policy and "
        "hubs from DPS, and the fingerprints (sha256 prefix) of the stored keys. Never prints a key.",
    )
    show.set_defaults(func=_show)
    rotate = group_sub.add_parser(
        "rotate-key", help="rotate the group key (old primary becomes secondary)", description=ROTATE_HELP
    )
    rotate.add_argument(
        "--force",
        action="store_true",
        help="drop the key of units flashed before the previous rotation (they get 401 from DPS)",
    )
    rotate.set_defaults(func=_rotate)


def _create(args: argparse.Namespace) -> int:
    with admin_session(args, key_store=args.key_store) as session:
        view = create_group(session.ctx, session.group_history)
        store = session.ctx.group_key_store().name
    print(f"enrollment group {view.group_id} is in DPS with the keys in the {store} key store")
    _print_view(view)
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    with admin_session(args) as session:
        view = show_group(session.ctx, session.group_history)
    _print_view(view)
    return EXIT_OK


def _rotate(args: argparse.Namespace) -> int:
    with admin_session(args) as session:
        rotation = rotate_group_key(session.ctx, session.group_history, force=args.force)
    if rotation.units_on_dropped_key:
        print(
            f"warning: {rotation.units_on_dropped_key} unit(s) were configured with the dropped key "
            f"sha256:{rotation.dropped_fingerprint}; they cannot provision until re-flashed",
            file=sys.stderr,
        )
    print(f"rotated the key of enrollment group {rotation.group_id}")
    print(f"  primary:   sha256:{rotation.primary_fingerprint} (new; units configured from now on)")
    print(f"  secondary: sha256:{rotation.secondary_fingerprint} (previous primary; flashed units)")
    print(f"  dropped:   sha256:{rotation.dropped_fingerprint}")
    return EXIT_OK


def _print_view(view: GroupView) -> None:
    dps = view.dps
    rows = [
        ("group", view.group_id),
        ("product", view.product),
        ("in DPS", "yes" if dps else "no (run `edgeline group create`)"),
        ("provisioning status", (dps.provisioning_status or "enabled") if dps else "-"),
        ("etag", (dps.etag or "-") if dps else "-"),
        ("iot edge", ("yes" if dps.iot_edge else "no") if dps else "-"),
        ("allocation policy", view.allocation_policy or "(the DPS default)"),
        ("iot hubs", ", ".join(view.iot_hubs) or "(all linked hubs)"),
        ("primary key", f"sha256:{view.primary_fingerprint}"),
        ("secondary key", f"sha256:{view.secondary_fingerprint}"),
        ("last rotated", view.last_rotated_at.isoformat() if view.last_rotated_at else "never"),
    ]
    for name, value in rows:
        print(f"{name + ':':21}{value}")
