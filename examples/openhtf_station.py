"""Example: an OpenHTF test station that provisions the Azure IoT Edge device on its fixture.

Run it where the station PC runs its other OpenHTF tests (after `pip install 'edgeline[openhtf]'`, a
registered station key from `edgeline station init` / `edgeline station add`, and `edgeline up` running):

    EDGELINE_MQTT_URL=mqtts://broker:8883 python examples/openhtf_station.py \\
        --name S1 --key-file /etc/edgeline/S1.key --port /dev/ttyUSB0

Your own phases (power-on, functional tests, ...) go before and after `provisioning_phases(...)`; the
test record's DUT id is the unit's registration ID, and the measurements hold its config SHA-256 and
stage durations. Every OpenHTF output callback (JSON files, a test database) receives them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import openhtf as htf
from openhtf.output.callbacks import json_factory

from pipeline.config import load_settings
from stations.drivers.registry import load_driver_factory
from stations.htf.phases import provisioning_phases
from stations.htf.plug import PlugSettings, station_plug
from stations.runtime.config import StationConfig


@htf.measures(htf.Measurement("fixture_powered").equals(True))
def power_on(test: htf.TestApi) -> None:
    """Stand-in for the factory's own first phase (switch the fixture's power relay, etc.)."""
    test.measurements.fixture_powered = True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="this station's name (registered with `station add`)")
    parser.add_argument("--key-file", required=True, type=Path, help="the station's private key")
    parser.add_argument("--port", required=True, help="the fixture's serial port, e.g. /dev/ttyUSB0 or COM3")
    parser.add_argument("--driver", default="line-protocol", help="device driver (default line-protocol)")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--records", type=Path, default=Path("records"), help="folder for JSON test records")
    args = parser.parse_args()

    settings = load_settings()  # EDGELINE_* environment / EDGELINE_CONFIG, as every edgeline command
    station = StationConfig(
        name=args.name,
        line=settings.line,
        key_file=args.key_file,
        product=settings.product,
        registration_id_template=settings.registration_id_template,
        topic_root=settings.topic_root,
    )
    plug = station_plug(
        PlugSettings(
            station, settings.mqtt_url, args.port, load_driver_factory(args.driver, baudrate=args.baud)
        )
    )
    test = htf.Test(power_on, *provisioning_phases(plug), test_name="provision-iot-edge")
    args.records.mkdir(parents=True, exist_ok=True)
    test.add_output_callbacks(
        json_factory.OutputToJSON(str(args.records / "{dut_id}.{start_time_millis}.json"))
    )
    return 0 if test.execute(test_start=lambda: "") else 1


if __name__ == "__main__":
    raise SystemExit(main())
