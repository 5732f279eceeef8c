"""`edgeline certs init|broker|worker|station`: the site CA and the MQTT TLS certificates it signs.

Responsible for: arguments and one-line errors. Not responsible for: the certificates
(pipeline.crypto.certs) or configuring Mosquitto (docs/deployment.md shows how).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.cli.main import EXIT_OK, CommandError

DIR_HELP = "folder holding ca.pem/ca.key and the issued files (default: ./certs)"


def register(sub: Any) -> None:
    """Add the `certs` command group."""
    parser = sub.add_parser(
        "certs",
        help="create the site CA and the broker, worker and station TLS certificates",
        description="TLS for MQTT (port 8883): `init` makes the site CA; `broker` the broker's server "
        "certificate; `worker NAME` and `station NAME` client certificates whose CN is the MQTT user. "
        "Keys are written with mode 0600; existing files are kept unless --force.",
    )
    certs_sub = parser.add_subparsers(dest="certs_command", metavar="SUBCOMMAND", required=True)
    init = certs_sub.add_parser(
        "init",
        help="create the site CA (ca.pem, ca.key)",
        description="Create the site's certificate authority in --dir: ca.pem (give it to every broker, "
        "worker and station) and ca.key (mode 0600; keep it off the line). Refuses to overwrite.",
    )
    _common(init)
    init.set_defaults(func=_init)
    broker = certs_sub.add_parser(
        "broker",
        help="the broker's server certificate (broker.pem, broker.key)",
        description="Issue the MQTT broker's server certificate from the site CA, for the host names it is "
        "reached by (Mosquitto: certfile/keyfile on the 8883 listener).",
    )
    broker.add_argument(
        "--host",
        action="append",
        default=[],
        help="a DNS name or IP address clients connect to (repeatable; default: localhost, 127.0.0.1)",
    )
    _common(broker)
    broker.set_defaults(func=_broker)
    for role in ("worker", "station"):
        leaf = certs_sub.add_parser(
            role,
            help=f"a {role}'s client certificate ({role}-NAME.pem/.key)",
            description=f"Issue a client certificate for one {role} from the site CA (settings "
            "mqtt_cert_file / mqtt_key_file), for brokers that require client certificates.",
        )
        leaf.add_argument("name", help=f"the {role}'s MQTT user name (the certificate's CN)")
        _common(leaf)
        leaf.set_defaults(func=_leaf, role=role)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=Path("certs"), help=DIR_HELP)
    parser.add_argument("--force", action="store_true", help="replace existing files")


def _init(args: argparse.Namespace) -> int:
    from pipeline.crypto.certs import init_ca

    return _run(lambda: init_ca(args.dir, force=args.force))


def _broker(args: argparse.Namespace) -> int:
    from pipeline.crypto.certs import issue

    hosts = tuple(args.host) or ("localhost", "127.0.0.1")
    return _run(lambda: issue(args.dir, "broker", hosts[0], hosts=hosts, force=args.force))


def _leaf(args: argparse.Namespace) -> int:
    from pipeline.crypto.certs import issue

    return _run(lambda: issue(args.dir, args.role, args.name, force=args.force))


def _run(make: Any) -> int:
    from pipeline.crypto.certs import CertError

    try:
        issued = make()
    except CertError as exc:
        raise CommandError(str(exc), exit_code=2) from None
    except OSError as exc:
        raise CommandError(f"{exc.filename}: {exc.strerror}") from None
    print(f"wrote {issued.cert} and {issued.key} (mode 0600)")
    return EXIT_OK
