"""`edgeline audit keygen | export-signed | verify-export` from the command line, over a real database."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from web_helpers import seed

from pipeline.cli.main import main
from pipeline.db.session import Database


def test_keygen_export_verify_and_a_tampered_export_names_the_record(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(database, [("assigned", "S1", None), ("failed", "S2", "no answer")])
    monkeypatch.setenv("EDGELINE_DATABASE_URL", database.url)
    key, pub, export = tmp_path / "site.key", tmp_path / "site.key.pub", tmp_path / "audit.jsonl"
    assert main(["audit", "keygen", "--private-key", str(key)]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert main(["audit", "keygen", "--private-key", str(key)]) == 1  # never overwrites a key
    assert main(["audit", "export-signed", "--private-key", str(key), "--output", str(export)]) == 0
    capsys.readouterr()
    assert main(["audit", "verify-export", str(export), "--public-key", str(pub)]) == 0
    assert "export ok: 10 record(s)" in capsys.readouterr().out

    lines = export.read_text().splitlines(keepends=True)
    body = json.loads(lines[7])
    body["record"]["actor"] = "someone-else"
    lines[7] = json.dumps(body) + "\n"
    export.write_text("".join(lines))
    assert main(["audit", "verify-export", str(export), "--public-key", str(pub)]) == 1
    err = capsys.readouterr().err
    assert "record 7" in err and "edited" in err
    assert len(err.strip().splitlines()) == 1


def test_verify_export_with_a_bad_key_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.pub").write_text("not a key")
    (tmp_path / "x.jsonl").write_text("{}\n")
    assert (
        main(["audit", "verify-export", str(tmp_path / "x.jsonl"), "--public-key", str(tmp_path / "x.pub")])
        == 1
    )
    err = capsys.readouterr().err
    assert "is not a PEM public key" in err and len(err.strip().splitlines()) == 1
