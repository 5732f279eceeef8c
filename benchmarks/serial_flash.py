"""Benchmark: identify + flash + verify a ~1 KB IoT Edge config over a paced simulated UART.

Runs a `SimulatedDevice` on a real pty, paced like a UART at --baud (10 bits per byte, both
directions), and drives it through `PySerialLink` + `LineProtocolDriver` exactly as a station does.
Prints one JSON object: {baud, config_bytes, raw_transfer_s, elapsed_s, overhead_ratio}, where
raw_transfer_s is the time the config's own bytes take on the wire and overhead_ratio is
elapsed / raw (the protocol's budget is <= 1.5). A figure, not a pass/fail test (architecture §10).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from stations.drivers.line_protocol.driver import LineProtocolDriver
from stations.drivers.line_protocol.simulator import SimulatedDevice
from stations.link import PySerialLink

REGISTRATION_ID = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"

CONFIG_TOML = f"""\
# Managed by edgeline for {REGISTRATION_ID}: do not edit by hand.
hostname = "{REGISTRATION_ID}"
auto_reprovisioning_mode = "OnErrorOnly"

[provisioning]
source = "dps"
global_endpoint = "https://global.azure-devices-provisioning.net/"
id_scope = "0ne00A1B2C3"
always_reprovision_on_startup = true

[provisioning.attestation]
method = "symmetric_key"
registration_id = "{REGISTRATION_ID}"
symmetric_key = {{ value = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=" }}

[agent]
name = "edgeAgent"
type = "docker"

[agent.config]
image = "mcr.microsoft.com/azureiotedge-agent:1.5"

[agent.env]
UpstreamProtocol = "AmqpWs"
StorageFolder = "/iotedge/storage"

[connect]
workload_uri = "unix:///var/run/iotedge/workload.sock"
management_uri = "unix:///var/run/iotedge/mgmt.sock"

[listen]
workload_uri = "fd://aziot-edged.workload.socket"
management_uri = "fd://aziot-edged.mgmt.socket"
min_tls_version = "tls1.2"

[moby_runtime]
uri = "unix:///var/run/docker.sock"
network = "azure-iot-edge"
"""


def run_once(baud: int, config: bytes, flash_dir: Path) -> float:
    """Return the seconds one identify + write_config (with verified read-back) takes."""
    device = SimulatedDevice(
        "007-888-ABC", "A1:B2:C3:D4:E5:F6", "EG-200", "1.4.2", flash_dir, baud=baud
    ).start()
    driver = LineProtocolDriver(PySerialLink(device.port, baud), reply_timeout=2.0)
    try:
        started = time.perf_counter()
        driver.identify()
        driver.write_config("/etc/aziot/config.toml", config)
        return time.perf_counter() - started
    finally:
        driver.close()
        device.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baud", type=int, default=115_200)
    parser.add_argument("--runs", type=int, default=5, help="report the median of this many runs")
    args = parser.parse_args()
    config = CONFIG_TOML.encode()
    with tempfile.TemporaryDirectory() as tmp:
        times = [run_once(args.baud, config, Path(tmp) / f"run{i}") for i in range(args.runs)]
    raw = len(config) * 10 / args.baud
    elapsed = statistics.median(times)
    print(
        json.dumps(
            {
                "baud": args.baud,
                "config_bytes": len(config),
                "raw_transfer_s": round(raw, 4),
                "elapsed_s": round(elapsed, 4),
                "overhead_ratio": round(elapsed / raw, 3),
                "runs": args.runs,
                "elapsed_min_max_s": [round(min(times), 4), round(max(times), 4)],
            }
        )
    )


if __name__ == "__main__":
    main()
