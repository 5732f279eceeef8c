"""An OpenHTF test sequence provisions a simulated device through the real pipeline and broker."""

from __future__ import annotations

import threading
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import openhtf as htf
import pytest
from conftest import Mosquitto
from line_helpers import register_station, start_line, wait_for

from pipeline.azure.dps_device import HttpDeviceRegistrar
from stations.drivers.line_protocol import line_protocol_driver
from stations.drivers.line_protocol.simulator import Faults, SimulatedDevice
from stations.htf.phases import provisioning_phases
from stations.htf.plug import PlugSettings, station_plug
from stations.runtime.config import StationConfig
from stations.simulation.boot import boot

pytestmark = pytest.mark.mosquitto


def run_sequence(plug_settings: PlugSettings, *, assigned: bool = False) -> Any:
    """Execute the provisioning phases as an OpenHTF test and return its record."""
    records: list[Any] = []
    phases = provisioning_phases(station_plug(plug_settings), assigned=assigned)
    test = htf.Test(*phases, test_name="edgeline-provision")
    test.add_output_callbacks(records.append)
    test.execute(test_start=lambda: "")
    return records[0]


def measurements(record: Any) -> dict[str, Any]:
    return {
        name: m.measured_value.value
        for p in record.phases
        for name, m in p.measurements.items()
        if m.measured_value.is_value_set
    }


def test_sequence_provisions_the_device_and_records_measurements(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    run_id = uuid.uuid4().hex[:6]
    with ExitStack() as stack:
        line = start_line(stack, tmp_path, mosquitto.url, run_id=run_id, client_id=f"htf-{run_id}")
        key_file = register_station(line, "HTF1", tmp_path / "keys")
        registrar = HttpDeviceRegistrar(poll_interval=0.2, max_poll_interval=0.5)
        stack.callback(registrar.close)
        booted: list[str] = []
        boots: list[threading.Thread] = []
        stack.callback(lambda: [b.join(30) for b in boots])  # before the registrar closes (LIFO)

        def on_boot(flash_dir: Path) -> None:
            boots.append(threading.Thread(target=lambda: booted.append(boot(flash_dir, registrar).status)))
            boots[-1].start()

        device = SimulatedDevice(
            "HTF-0001", "02:aa:bb:00:00:01", "EDGE-SIM-1", "1.0", tmp_path / "dev", on_boot=on_boot
        ).start()
        stack.callback(device.stop)
        config = StationConfig(
            name="HTF1", line=line.settings.line, key_file=key_file, topic_root=line.settings.topic_root
        )
        record = run_sequence(
            PlugSettings(
                config, line.settings.mqtt_url, device.port, line_protocol_driver(115200), config_timeout=60
            ),
            assigned=True,
        )

        rid = "sn-htf-0001-mac-02-aa-bb-00-00-01"
        assert record.outcome == htf.test_record.Outcome.PASS, record.outcome_details
        assert record.dut_id == rid
        values = measurements(record)
        assert values["registration_id"] == rid and values["serial"] == "HTF-0001"
        assert values["mac"] == "02:aa:bb:00:00:01"
        issued = line.query("SELECT config_sha256 FROM units WHERE registration_id = ?", rid)[0][0]
        assert values["config_sha256"] == issued
        assert values["scan_to_config_seconds"] >= 0 and values["flash_seconds"] >= 0
        assert values["assign_seconds"] >= 0  # the pipeline told the station DPS assigned the unit
        assert line.unit_state(rid) == "assigned"


def test_a_corrupted_read_back_fails_the_phase_with_the_reason(tmp_path: Path, mosquitto: Mosquitto) -> None:
    run_id = uuid.uuid4().hex[:6]
    with ExitStack() as stack:
        line = start_line(stack, tmp_path, mosquitto.url, run_id=run_id, client_id=f"htf-{run_id}")
        key_file = register_station(line, "HTF2", tmp_path / "keys")
        device = SimulatedDevice(
            "HTF-0002",
            "02:aa:bb:00:00:02",
            "EDGE-SIM-1",
            "1.0",
            tmp_path / "dev",
            faults=Faults(wrong_hash=True),
        ).start()
        stack.callback(device.stop)
        config = StationConfig(
            name="HTF2", line=line.settings.line, key_file=key_file, topic_root=line.settings.topic_root
        )
        record = run_sequence(
            PlugSettings(
                config, line.settings.mqtt_url, device.port, line_protocol_driver(115200), config_timeout=60
            )
        )

        assert record.outcome != htf.test_record.Outcome.PASS
        values = measurements(record)
        assert "read-back" in values["failure"] or "hash" in values["failure"].lower()
        assert "config_sha256" not in values
        rid = "sn-htf-0002-mac-02-aa-bb-00-00-02"
        wait_for(lambda: line.unit_state(rid) == "failed", 30, lambda: f"{rid} {line.unit_state(rid)}")


def test_example_station_script_explains_itself() -> None:
    import subprocess
    import sys

    script = Path(__file__).parents[2] / "examples" / "openhtf_station.py"
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--port" in done.stdout and "OpenHTF" in done.stdout
