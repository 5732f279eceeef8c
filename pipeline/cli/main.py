"""The `edgeline` console script: parses arguments and hands over to one command module.

Responsible for: the top-level parser, `--version`, loading the chosen command's code, and the one
place where known failures become one line on stderr (no tracebacks), including a reader that closed
the pipe (`edgeline audit export | head`).
Not responsible for: what any command does (the `*_cmd` / `*_run` modules).

Convention for command modules (listed in COMMAND_MODULES):
- `<name>_cmd.py` exposes `register(subparsers)` and imports only argparse and light pipeline modules
  (no SQLAlchemy, paho, httpx, rich, emulator...): `edgeline --help` imports every one of them.
- Each parser it adds sets `func` to a string `"pipeline.cli.<name>_run:<function>"`; the runner module
  is imported only when that command runs, and `<function>(args) -> int` returns the exit code.
- A plain old-style module whose `func` is a callable still works (it only makes start-up slower);
  converting one means moving its runners and heavy imports into `<name>_run.py` and replacing
  `func=_run` by `func="pipeline.cli.<name>_run:run"`.
- Every parser and subparser gets a `description` (tests/unit/test_cli_parser.py walks them all).
- Expected failures raise `CommandError(message, exit_code)`; library-level errors an operator can fix
  (bad settings, unreachable database or broker, wrong master key) are mapped in KNOWN_ERRORS.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

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
    "pipeline.cli.unit_cmd",
    "pipeline.cli.web_cmd",
    "pipeline.cli.report_cmd",
    "pipeline.cli.doctor_cmd",
    "pipeline.cli.sparkplug_cmd",
    "pipeline.cli.certs_cmd",
)

NOISY_LOGGERS = ("amqtt", "transitions", "alembic", "apscheduler", "httpx", "azure", "uamqp", "msrest")
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `yes | head`

MASTER_KEY_HINT = (
    "{exc}; check master_key (EDGELINE_MASTER_KEY) or master_key_file (EDGELINE_MASTER_KEY_FILE): it must "
    "be the key the database's stored keys were sealed with"
)

# Known failures by (module, class name), checked in order; the module is looked up in sys.modules, so
# this table imports nothing: an exception of a class whose module was never imported cannot occur.
# The value is the exit code and the line to print: a template with {exc}, or None for the message.
KNOWN_ERRORS: tuple[tuple[str, str, int, str | None], ...] = (
    ("pipeline.config", "ConfigError", EXIT_USAGE, None),
    ("pipeline.crypto.sealing", "SealError", EXIT_FAILURE, MASTER_KEY_HINT),
    ("pipeline.db.errors", "DatabaseUrlInvalid", EXIT_USAGE, None),
    ("pipeline.db.errors", "DatabaseUnavailable", EXIT_FAILURE, None),
    ("pipeline.db.errors", "SchemaMissing", EXIT_FAILURE, None),
    ("pipeline.db.migrate", "MigrationsNotFound", EXIT_FAILURE, None),
    ("pipeline.bus.ports", "BusError", EXIT_FAILURE, None),
    ("pipeline.azure.ports", "AzureError", EXIT_FAILURE, None),
    ("pipeline.service.common", "KeyUnavailable", EXIT_FAILURE, None),
)


class CommandError(RuntimeError):
    """An expected failure of a command: printed as one line, exit code attached."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _VersionAction(argparse.Action):
    """`--version`: looks the installed version up only when asked (importlib.metadata is not free)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print edgeline's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("edgeline")
        except PackageNotFoundError:
            text = "unknown (not installed)"
        print(f"edgeline {text}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with every available command module registered."""
    parser = argparse.ArgumentParser(
        prog="edgeline",
        description="Factory-line provisioning of Azure IoT Edge devices: scan -> key -> DPS enrollment -> "
        "flashed config -> assigned.",
        epilog="Settings come from --config FILE (TOML) and EDGELINE_* environment variables "
        "(environment wins).",
    )
    parser.add_argument("--version", action=_VersionAction)
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


def resolve(func: str | Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The runner a parser's `func` names: a callable as is, or `"module:function"` imported now."""
    if callable(func):
        return func
    module_name, _, attribute = func.partition(":")
    runner: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module_name), attribute)
    return runner


def known_error(exc: BaseException) -> tuple[int, str] | None:
    """The exit code and one line for an exception an operator can act on, or None."""
    for module_name, class_name, code, message in KNOWN_ERRORS:
        module = sys.modules.get(module_name)
        kind = getattr(module, class_name, None) if module is not None else None
        if isinstance(kind, type) and isinstance(exc, kind):
            return code, message.format(exc=exc) if message else str(exc)
    return None


# A station public key as `edgeline station init` prints it (43 base64url characters) that begins with
# '-': one key in 64 does, and argparse would read it as an option ("expected one argument").
_DASH_KEY = re.compile(r"-[A-Za-z0-9_-]{42}=?")


def attach_dash_values(argv: Sequence[str]) -> list[str]:
    """`--public-key -Ab…` as `--public-key=-Ab…`, so a key that starts with '-' is taken as the value."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] == "--public-key" and _DASH_KEY.fullmatch(arg):
            out[-1] = f"--public-key={arg}"
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(attach_dash_values(sys.argv[1:] if argv is None else argv))
    level = (args.log_level or "INFO").upper()
    if level not in logging.getLevelNamesMapping():
        print(f"edgeline: --log-level {args.log_level!r}: use DEBUG, INFO, WARNING or ERROR", file=sys.stderr)
        return EXIT_USAGE
    _configure_logging(level)
    try:
        code: int = resolve(args.func)(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except CommandError as exc:
        print(f"edgeline {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except Exception as exc:
        known = known_error(exc)
        if known is None:
            raise
        print(f"edgeline {args.command}: {known[1]}", file=sys.stderr)
        return known[0]


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in NOISY_LOGGERS:  # third-party INFO chatter drowns the operator's lines
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # "skipped: max instances" is by design
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)


def _quiet_broken_pipe() -> int:
    """The reader went away (`| head`): stop quietly, as Unix tools do, with 128 + SIGPIPE."""
    try:
        # Python flushes stdout again at exit; point it at /dev/null so that flush cannot complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":  # pragma: no cover - `python -m pipeline.cli.main`
    # Run the imported module's main, not this __main__ copy: command modules import CommandError from
    # `pipeline.cli.main`, and two copies of the class would turn one-line errors into tracebacks.
    from pipeline.cli import main as _module

    sys.exit(_module.main())
