"""The consumer's notion of a transient database failure, against a PostgreSQL that is not there."""

from __future__ import annotations

import pytest

from pipeline.db.session import Database
from pipeline.db.transient import is_transient_db_error
from pipeline.service.common import Rejected

pytestmark = pytest.mark.postgres


def test_unreachable_postgresql_is_transient() -> None:
    db = Database("postgresql://postgres@127.0.0.1:1/edgeline_nowhere?connect_timeout=2")
    try:
        with pytest.raises(Exception) as raised, db.uow() as uow:
            uow.units.get("sn-1-mac-02-00-00-00-00-01")
    finally:
        db.dispose()
    assert is_transient_db_error(raised.value), repr(raised.value)
    assert "127.0.0.1" in str(raised.value) or "connect" in str(raised.value).lower()


def test_rejections_and_bugs_are_not_transient() -> None:
    assert not is_transient_db_error(Rejected("bad serial"))
    assert not is_transient_db_error(KeyError("x"))
