"""`edgeline keys derive`: the article's openssl step, byte for byte on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli.main import main

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "data" / "vectors.json").read_text())


@pytest.mark.parametrize("vector", VECTORS["derive_device_key"], ids=lambda v: v["note"])
def test_derive_prints_exactly_the_device_key(
    vector: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["keys", "derive", "--key", vector["group_key"], "--registration-id", vector["registration_id"]]
    )
    out, err = capsys.readouterr()
    assert (code, out, err) == (0, vector["device_key"] + "\n", "")


def test_the_installed_command_prints_the_article_vector() -> None:
    article = VECTORS["derive_device_key"][0]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "keys",
            "derive",
            "--key",
            article["group_key"],
            "--registration-id",
            article["registration_id"],
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=\n")


def test_bad_key_is_one_line_without_key_material(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["keys", "derive", "--key", "not base64!", "--registration-id", "sn-1-mac-02-00-00-00-00-01"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--key" in err and "not base64!" not in err


def test_registration_id_that_breaks_the_rule_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["keys", "derive", "--key", VECTORS["derive_device_key"][0]["group_key"], "--registration-id", "SN_1"]
    )
    assert code == 2 and "'S'" in capsys.readouterr().err
