"""`edgeline station run` with `label_printer` set prints one label per PASS on a real TCP listener."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import Mosquitto, free_port
from line_helpers import register_station, start_line
from test_labels_printer import FakePrinter

from stations.labels.zpl import escape_field

pytestmark = pytest.mark.mosquitto


def test_station_prints_a_label_for_every_passed_unit(tmp_path: Path, mosquitto: Mosquitto) -> None:
    run_id = uuid.uuid4().hex[:6]
    printer = FakePrinter(free_port())
    with ExitStack() as stack:
        stack.callback(printer.close)
        line = start_line(stack, tmp_path, mosquitto.url, run_id=run_id, client_id=f"labels-{run_id}")
        key_file = register_station(line, "L1", tmp_path / "keys")
        env = {
            **os.environ,
            "EDGELINE_MQTT_URL": line.settings.mqtt_url,
            "EDGELINE_TOPIC_ROOT": line.settings.topic_root,
            "EDGELINE_LINE": line.settings.line,
            "EDGELINE_LABEL_PRINTER": f"tcp://127.0.0.1:{printer.port}",
            "EDGELINE_LABEL_PREVIEW_DIR": str(tmp_path / "previews"),
        }
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline.cli.main",
                "station",
                "run",
                "--name",
                "L1",
                "--key-file",
                str(key_file),
                "--watch-dir",
                str(tmp_path / "ports"),
                "--simulate",
                "3",
                "--serial-prefix",
                "LBL",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "3 passed, 0 failed" in done.stdout
        rids = [r for (r,) in line.query("SELECT registration_id FROM units ORDER BY registration_id")]
    assert len(rids) == 3
    labels = sorted(printer.labels)
    assert len(labels) == 3, "one label per PASS, none twice"
    for rid in rids:
        assert sum(f"^FDMA,{escape_field(rid)}^FS".encode() in label for label in labels) == 1
        assert (tmp_path / "previews" / f"{rid}.png").is_file()
    assert list((key_file.parent / f"{key_file.name}.labels").glob("*.zpl")) == []  # queue drained
