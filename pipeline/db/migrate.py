"""Apply and inspect Alembic migrations from code, from any working directory.

Responsible for: locating `migrations/` (top level of the repository, next to the `pipeline` package),
building the Alembic config programmatically, and running it on a connection from `create_engine_for`
(so SQLite gets the same pragmas and BEGIN IMMEDIATE as the application).
Not responsible for: writing migrations, or creating databases/servers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from pipeline.db.engine import create_engine_for

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class MigrationsNotFound(RuntimeError):
    """The migrations directory is not where an installation of edgeline puts it."""


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at edgeline's migrations, with `url` for env.py if given."""
    ini = MIGRATIONS_DIR / "alembic.ini"
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise MigrationsNotFound(
            f"edgeline's migrations are missing at {MIGRATIONS_DIR}; reinstall edgeline from its source tree"
        )
    config = Config(str(ini)) if ini.is_file() else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision` on the database at `url`."""
    _run(url, lambda cfg: command.upgrade(cfg, revision))


def downgrade(url: str, revision: str) -> None:
    """Revert migrations down to `revision` (`base` removes every table)."""
    _run(url, lambda cfg: command.downgrade(cfg, revision))


def current(url: str) -> str | None:
    """The revision the database at `url` is at, or None if it was never migrated."""
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head() -> str | None:
    """The newest revision shipped with this version of edgeline."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _run(url: str, action: Callable[[Config], None]) -> None:
    config = alembic_config(url)
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            config.attributes["connection"] = conn
            action(config)
            conn.commit()
    finally:
        engine.dispose()
