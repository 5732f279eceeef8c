"""`edgeline station add --mqtt-passwd FILE --mqtt-acl FILE`: the new station's broker login and ACL entry.

Responsible for: the options, a fresh random password (printed once, stored only hashed), the
Mosquitto password-file entry and an ACL section confining the station to its own topic prefix.
Not responsible for: registering the station with the pipeline (station_cmd) or reloading Mosquitto
(send it SIGHUP, or restart it).
"""

from __future__ import annotations

import argparse
import secrets
from datetime import UTC, datetime
from pathlib import Path

from pipeline.bus.topics import Topics
from pipeline.cli.main import CommandError
from pipeline.crypto.mqtt_passwd import set_password


def add_broker_arguments(add: argparse.ArgumentParser) -> None:
    """Add the broker options to `station add`."""
    add.add_argument(
        "--mqtt-passwd",
        metavar="FILE",
        help="also create the station's MQTT login: a random password is printed once and its hash "
        "written to this Mosquitto password file (mosquitto_passwd format; reload the broker after)",
    )
    add.add_argument(
        "--mqtt-acl",
        metavar="FILE",
        help="append an ACL section to this Mosquitto acl_file: the station may publish only under its "
        "own prefix and read only its own commands",
    )


def write_broker_access(args: argparse.Namespace, line: str, topic_root: str) -> None:
    """Do what --mqtt-passwd / --mqtt-acl ask; print the password once."""
    try:
        if args.mqtt_passwd:
            password = secrets.token_urlsafe(24)
            set_password(Path(args.mqtt_passwd), args.name, password)
            print(f"station {args.name} MQTT password (shown once; store it on the station): {password}")
        if args.mqtt_acl:
            with open(args.mqtt_acl, "a", encoding="utf-8") as acl:
                acl.write(acl_section(args.name, line, topic_root))
            print(f"station {args.name}: ACL entry appended to {args.mqtt_acl} (reload the broker)")
    except OSError as exc:
        raise CommandError(f"{exc.filename}: {exc.strerror}") from None


def acl_section(station: str, line: str, topic_root: str) -> str:
    """The Mosquitto ACL lines for one station (user section, explicit topics)."""
    prefix = Topics(topic_root).station_prefix(line, station)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    return (
        f"\n# station {station}, line {line} (edgeline station add, {stamp})\n"
        f"user {station}\n"
        f"topic write {prefix}/events/#\n"
        f"topic write {prefix}/status\n"
        f"topic read {prefix}/commands/#\n"
    )
