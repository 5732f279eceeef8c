"""The command line's shape: every command explains itself, and the parser loads no heavy library.

`edgeline --help` and short commands must start fast: building the parser may import only argparse and
light pipeline modules; a command's runner module is imported when that command runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pipeline.cli.main import attach_dash_values, build_parser, known_error, main, resolve
from pipeline.config import ConfigError

HEAVY = ("sqlalchemy", "alembic", "paho", "httpx", "azure", "rich", "amqtt", "apscheduler", "serial")


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, (*path, name))


def _parser_at(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


PATHS = list(_walk(build_parser()))


def test_the_walk_finds_the_commands_and_their_subcommands() -> None:
    assert {("audit", "verify"), ("audit", "export"), ("db", "current"), ("keys", "derive")} <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "edgeline")
def test_every_command_has_a_description(path: tuple[str, ...]) -> None:
    parser = _parser_at(path)
    assert parser.description and len(parser.description.strip()) > 20, f"edgeline {' '.join(path)}"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "edgeline")
def test_every_runnable_command_names_a_runner_that_exists(path: tuple[str, ...]) -> None:
    func = _parser_at(path).get_default("func")
    if func is not None:
        assert callable(resolve(func)), f"edgeline {' '.join(path)}: {func!r}"


def test_building_the_parser_imports_no_heavy_library() -> None:
    code = (
        "import json, sys; from pipeline.cli.main import build_parser; build_parser(); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_keys_derive_runs_without_the_database_or_bus_libraries() -> None:
    code = (
        "import json, sys; from pipeline.cli.main import main; "
        "code = main(['keys', 'derive', '--key', 'A' * 43 + '=', '--registration-id', 'sn-1']); "
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in json.loads(done.stderr)}
    assert not loaded & {"sqlalchemy", "alembic", "paho", "httpx", "azure"}


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("edgeline ") and out.strip().split()[1][0].isdigit()


def test_an_old_style_module_with_a_callable_func_still_works() -> None:
    def runner(args: argparse.Namespace) -> int:
        return 7

    assert resolve(runner)(argparse.Namespace()) == 7
    assert resolve("pipeline.cli.db_run:upgrade").__name__ == "upgrade"


def test_known_errors_become_one_line_and_unknown_ones_do_not() -> None:
    assert known_error(ConfigError("setting x is wrong")) == (2, "setting x is wrong")
    assert known_error(RuntimeError("a bug")) is None


def test_a_bad_log_level_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["--log-level", "chatty", "keys", "derive", "--key", "A" * 43 + "=", "--registration-id", "x"])
        == 2
    )
    assert "--log-level 'chatty'" in capsys.readouterr().err


def test_a_station_key_that_starts_with_a_dash_is_taken_as_the_value() -> None:
    key = "-" + "A" * 41 + "_"  # base64url: one station key in 64 begins with '-'
    argv = ["station", "add", "S1", "--public-key", key, "--line", "line2"]

    args = build_parser().parse_args(attach_dash_values(argv))

    assert (args.public_key, args.line) == (key, "line2")
    with pytest.raises(SystemExit):  # what argparse alone does with it
        build_parser().parse_args(argv)
    assert attach_dash_values(["station", "add", "S1", "--public-key", "--line"]) == [
        "station", "add", "S1", "--public-key", "--line"
    ]  # fmt: skip
