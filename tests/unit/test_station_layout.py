"""The import rules the `stations/` tree stands for, checked on the source (docs/writing-a-device-driver.md).

Driver families are independent of each other and of the runtime; the runtime does not depend on the
simulators; pyserial is imported only by the serial link and USB enumeration; stations never reach the
database.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STATIONS = Path(__file__).resolve().parents[2] / "stations"
FAMILIES = sorted(p.name for p in (STATIONS / "drivers").iterdir() if (p / "__init__.py").exists())


def _imports(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; `from a import b` counts as `a.b` and `a`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def _offenders(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(STATIONS.parent)} imports {name}"
        for path in _modules(folder)
        for name in sorted(_imports(path))
        if name.startswith(forbidden)
    ]


def test_there_are_driver_families() -> None:
    assert {"line_protocol", "linux_console"} <= set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_driver_family_imports_no_other_family_and_not_the_runtime(family: str) -> None:
    others = tuple(f"stations.drivers.{other}" for other in FAMILIES if other != family)
    assert (
        _offenders(STATIONS / "drivers" / family, (*others, "stations.runtime", "stations.simulation.fleet"))
        == []
    )


def test_the_runtime_does_not_depend_on_simulators() -> None:
    forbidden = ("stations.simulation", *(f"stations.drivers.{f}.simulator" for f in FAMILIES))
    assert _offenders(STATIONS / "runtime", forbidden) == []


def test_pyserial_only_in_the_link_and_usb_enumeration() -> None:
    allowed = {STATIONS / "link.py", STATIONS / "runtime" / "usb_ports.py"}
    users = {path for path in _modules(STATIONS) if any(n.split(".")[0] == "serial" for n in _imports(path))}
    assert users == allowed


def test_stations_never_import_the_database() -> None:
    assert _offenders(STATIONS, ("pipeline.db", "sqlalchemy", "alembic")) == []
