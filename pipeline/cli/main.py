"""The `edgeline` console script: parses arguments and hands over to one command module.

Each command lives in its own module exposing `register(subparsers)`; the parser it adds sets
`func(args) -> int`. Expected failures (bad config, unreachable broker, bad input) print one line to
stderr naming what to fix and exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pipeline.config import ConfigError

COMMAND_MODULES = (
    "pipeline.cli.demo_cmd",
    "pipeline.cli.up_cmd",
    "pipeline.cli.station_cmd",
    "pipeline.cli.emulator_cmd",
    "pipeline.cli.db_cmd",
    "pipeline.cli.keys_cmd",
    "pipeline.cli.audit_cmd",
    "pipeline.cli.group_cmd",
    "pipeline.cli.enrollment_cmd",
    "pipeline.cli.certs_cmd",
)

NOISY_LOGGERS = ("amqtt", "transitions", "alembic", "apscheduler", "httpx", "azure", "uamqp", "msrest")
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class CommandError(RuntimeError):
    """An expected failure of a command: printed as one line, exit code attached."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with every available command module registered."""
    parser = argparse.ArgumentParser(
        prog="edgeline",
        description="Factory-line provisioning of Azure IoT Edge devices: scan -> key -> DPS enrollment -> "
        "flashed config -> assigned.",
        epilog="Settings come from --config FILE (TOML) and EDGELINE_* environment variables "
        "(environment wins).",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (default: $EDGELINE_CONFIG)")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR (default: INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=(args.log_level or "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in NOISY_LOGGERS:  # third-party INFO chatter drowns the operator's lines
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("apscheduler.scheduler").setLevel(
        logging.ERROR
    )  # "skipped: max instances" is by design
    try:
        code: int = args.func(args)
        return code
    except (ConfigError, CommandError) as exc:
        print(f"edgeline {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, CommandError) else EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover - `python -m pipeline.cli.main`
    # Run the imported module's main, not this __main__ copy: command modules import CommandError from
    # `pipeline.cli.main`, and two copies of the class would turn one-line errors into tracebacks.
    from pipeline.cli import main as _module

    sys.exit(_module.main())
