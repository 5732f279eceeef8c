"""docker-compose.yml is valid for a real compose implementation and runs commands the real CLI accepts.

`docker-compose` (Debian bookworm package `docker-compose`, 1.29) validates and interpolates the file
without a Docker engine. The file requires its secrets as variables, so it is checked with the
documented example env file, and checked to refuse to start without them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.cli.main import build_parser, resolve
from pipeline.config import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / "deploy" / "edgeline.env.example"
SETUP_SCRIPT = REPO / "deploy" / "station-setup.sh"
# docs/architecture.md names mosquitto, postgres, the emulator and the workers; the rest make the stack
# runnable.
REQUIRED_SERVICES = {
    "mosquitto",
    "postgres",
    "emulator",
    "workers",
    "migrate",
    "station-setup",
    "station-sim",
}
# EDGELINE_* variables that are not Settings fields (pipeline/config.py) but are read elsewhere.
NON_SETTINGS_VARIABLES = {"EDGELINE_EMULATOR_SERVICE_KEY"}
_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


# Only where the binary is missing (a developer machine): CI installs it (.ci/run) and runs these.
needs_docker_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed (`apt-get install docker-compose`; .ci/run installs it)",
)


def docker_compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose is not installed: `apt-get install docker-compose` (Debian package "
            "docker-compose, 1.29; validates compose files without a Docker engine)"
        )
    return binary


def run_compose(*args: str, env_file: Path | None) -> subprocess.CompletedProcess[str]:
    variables = _variables_in(COMPOSE.read_text())
    env = {k: v for k, v in os.environ.items() if k not in variables}  # only the env file counts
    options = ["--env-file", str(env_file)] if env_file else []
    return subprocess.run(
        [docker_compose(), *options, "-f", str(COMPOSE), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _variables_in(text: str) -> set[str]:
    return set(re.findall(r"\$\{(\w+)", text))


def compose_file() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@needs_docker_compose
def test_compose_config_is_valid_with_the_example_env_file() -> None:
    result = run_compose("config", "-q", env_file=ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr


def test_every_variable_of_the_compose_file_is_documented_in_the_example_env_file() -> None:
    documented = set(re.findall(r"^#?\s*(\w+)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    missing = _variables_in(COMPOSE.read_text()) - documented - {"EDGELINE_IMAGE_TAG"}
    assert not missing, f"add to {ENV_EXAMPLE.name}: {sorted(missing)}"


@needs_docker_compose
def test_compose_refuses_to_run_without_the_secrets() -> None:
    result = run_compose("config", "-q", env_file=None)
    assert result.returncode != 0
    assert "set " in result.stderr and "deploy/edgeline.env" in result.stderr, result.stderr


def test_the_services_the_design_names_exist() -> None:
    services = compose_file()["services"]
    assert set(services) >= REQUIRED_SERVICES, sorted(REQUIRED_SERVICES - set(services))
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert services["postgres"]["image"] == "postgres:16"
    assert "healthcheck" in services["postgres"]
    depends = services["workers"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert {"mosquitto", "emulator"} <= set(depends)


def test_mounted_repository_files_exist() -> None:
    for name, service in compose_file()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).is_file(), f"{name} mounts {source}, which is not in the repository"


def _resolve_defaults(token: str) -> str:
    """`--simulate=${STATION_SIM_UNITS:-8}` -> `--simulate=8` (compose interpolation with defaults)."""
    resolved = _DEFAULTED.sub(lambda m: m.group(2), token)
    assert "${" not in resolved, f"{token!r}: give the variable a default, or parse the resolved config"
    return resolved


def _edgeline_commands() -> list[tuple[str, list[str]]]:
    commands: list[tuple[str, list[str]]] = []
    for name, service in compose_file()["services"].items():
        if not str(service.get("image", "")).startswith("edgeline:"):
            continue
        entrypoint = service.get("entrypoint")
        if entrypoint is None:  # the image's entrypoint: `edgeline`
            command = service["command"]
            assert isinstance(command, list), f"{name}: use the list form of `command`"
            commands.append((name, [_resolve_defaults(str(t)) for t in command]))
        elif entrypoint == ["/bin/sh", "-c"]:  # a shell one-liner: check each `edgeline ...` in it
            script = " ".join(str(t) for t in service["command"])
            for part in re.split(r"&&|\|\||[()]", script):
                words = shlex.split(part)
                if words[:1] == ["edgeline"]:
                    commands.append((name, [_resolve_defaults(w) for w in words[1:]]))
        else:
            assert entrypoint == ["edgeline-station-setup"], f"{name}: unexpected entrypoint {entrypoint}"
    for line in SETUP_SCRIPT.read_text().splitlines():
        if not re.match(r"\s*(exec\s+)?edgeline\s", line):
            continue
        words = shlex.split(line, comments=True)
        if words[:1] == ["exec"]:
            words = words[1:]
        if words[:1] == ["edgeline"]:
            # shell variables stand for values; "S1" is a valid value for every argument used
            words = words[: next((i for i, w in enumerate(words) if w.startswith(">")), len(words))]
            args = [re.sub(r"\$\{[^}]*\}|\$\w+", "S1", w) for w in words[1:]]
            commands.append((SETUP_SCRIPT.name, args))
    return commands


def test_every_edgeline_command_parses_with_the_real_cli() -> None:
    commands = _edgeline_commands()
    assert {" ".join(args[:2]) for _, args in commands} >= {
        "emulator --host=0.0.0.0",
        "db upgrade",
        "up --metrics-listen=0.0.0.0:9100",
        "station run",
        "station init",
        "station add",
        "certs init",
        "certs broker",
    }
    for where, args in commands:
        try:
            parsed = build_parser().parse_args(args)
        except SystemExit:
            pytest.fail(f"{where}: `edgeline {' '.join(args)}` does not parse")
        assert callable(resolve(parsed.func)), where


def test_edgeline_environment_variables_are_real_settings() -> None:
    fields = {f"EDGELINE_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    data = compose_file()
    for name, service in data["services"].items():
        unknown = {k for k in service.get("environment", {}) if k.startswith("EDGELINE_")} - fields
        assert not (unknown - NON_SETTINGS_VARIABLES), f"{name}: unknown settings {sorted(unknown)}"


def test_only_the_workers_get_the_master_key_and_stations_get_no_database() -> None:
    services = compose_file()["services"]
    with_key = {
        n for n, s in services.items() if "secrets" in s or "EDGELINE_MASTER_KEY" in s.get("environment", {})
    }
    assert with_key == {"workers"}
    station_env = services["station-sim"]["environment"]
    assert "EDGELINE_DATABASE_URL" not in station_env
    assert not any("DPS" in k for k in station_env)
