"""`edgeline group create|show|rotate-key`: the product's symmetric-key enrollment group.

Responsible for: arguments and help texts that state the consequences (printing results, key
fingerprints only, never keys: pipeline.cli.group_run, imported on use).
Not responsible for: the operations themselves (pipeline.service.groups) or wiring (pipeline.bootstrap).
"""

from __future__ import annotations

from typing import Any

RUN = "pipeline.cli.group_run"

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
    create.set_defaults(func=f"{RUN}:create")
    show = group_sub.add_parser(
        "show",
        help="show the group in DPS and the database (key fingerprints only)",
        description="Print the group's provisioning status, ETag, IoT Edge flag, allocation policy and "
        "hubs from DPS, and the fingerprints (sha256 prefix) of the stored keys. Never prints a key.",
    )
    show.set_defaults(func=f"{RUN}:show")
    rotate = group_sub.add_parser(
        "rotate-key", help="rotate the group key (old primary becomes secondary)", description=ROTATE_HELP
    )
    rotate.add_argument(
        "--force",
        action="store_true",
        help="drop the key of units flashed before the previous rotation (they get 401 from DPS)",
    )
    rotate.set_defaults(func=f"{RUN}:rotate")
