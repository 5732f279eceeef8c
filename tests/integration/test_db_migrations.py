"""Migrations: one history that upgrades and downgrades on SQLite and PostgreSQL, matching the models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import create_pg_database, drop_pg_database
from sqlalchemy import inspect

from pipeline.cli.main import main
from pipeline.db import migrate
from pipeline.db.engine import create_engine_for
from pipeline.db.errors import DatabaseUnavailable
from pipeline.db.tables import Base

TABLES = {
    "units",
    "device_keys",
    "enrollment_groups",
    "stations",
    "outbox",
    "processed_messages",
    "audit_log",
    "audit_head",
    "unit_approvals",
    "api_tokens",  # web
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    url = create_pg_database()
    yield url
    drop_pg_database(url)


def _tables(url: str) -> set[str]:
    engine = create_engine_for(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_then_downgrade_to_base(empty_url: str) -> None:
    assert migrate.current(empty_url) is None
    migrate.upgrade(empty_url)
    assert migrate.current(empty_url) == migrate.head()
    assert _tables(empty_url) == TABLES
    migrate.upgrade(empty_url)  # idempotent
    migrate.downgrade(empty_url, "base")
    assert migrate.current(empty_url) is None
    assert _tables(empty_url) == set()


def test_models_match_migrations(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    engine = create_engine_for(empty_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_cli_db_upgrade_from_any_cwd(
    empty_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("EDGELINE_DATABASE_URL", empty_url)
    assert main(["db", "upgrade"]) == 0
    assert f"to {migrate.head()}" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["db", "current"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_unreachable_database_names_setting_and_masks_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://edge:s3cret-pw@127.0.0.1:1/nowhere"
    with pytest.raises(DatabaseUnavailable) as info:
        migrate.current(url)
    assert "s3cret-pw" not in str(info.value)
    assert "EDGELINE_DATABASE_URL" in str(info.value)
    monkeypatch.setenv("EDGELINE_DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert "EDGELINE_DATABASE_URL" in err and "s3cret-pw" not in err and "***" in err
