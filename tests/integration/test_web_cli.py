"""`edgeline web token create|list|revoke` and `edgeline web` argument errors, over a real database."""

from __future__ import annotations

import pytest

from pipeline.cli.main import main
from pipeline.db.api_tokens import lookup_token
from pipeline.db.session import Database


def test_token_create_prints_the_token_last_and_list_never_shows_it(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGELINE_DATABASE_URL", database.url)
    assert (
        main(["web", "token", "create", "--role", "auditor", "--name", "qa", "--listen", "10.0.0.5:8080"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    token = lines[-1]
    assert token.startswith("elt_") and f"dashboard: http://10.0.0.5:8080/?token={token}" in lines
    info = lookup_token(database, token)
    assert info is not None and (info.role, info.name) == ("auditor", "qa")

    assert main(["web", "token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "auditor\tqa" in listing and token not in listing

    assert main(["web", "token", "revoke", str(info.id)]) == 0
    assert lookup_token(database, token) is None
    assert main(["web", "token", "revoke", str(info.id)]) == 1
    assert "no live token" in capsys.readouterr().err


def test_unknown_role_and_bad_listen_are_usage_errors(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGELINE_DATABASE_URL", database.url)
    with pytest.raises(SystemExit) as exit_info:
        main(["web", "token", "create", "--role", "root"])
    assert exit_info.value.code == 2
    assert main(["web", "--listen", "localhost"]) == 2
    err = capsys.readouterr().err
    assert "--listen 'localhost' is not HOST:PORT" in err
