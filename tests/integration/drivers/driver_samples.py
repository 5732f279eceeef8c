"""What the driver tests flash and wait for: one realistic IoT Edge config, its digest, a poll helper."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

CONFIG_PATH = "/etc/aziot/config.toml"
CONFIG = (
    b'[provisioning]\nsource = "dps"\nglobal_endpoint = "https://global.azure-devices-provisioning.net/"\n'
    b'id_scope = "0ne00A1B2C3"\n\n[provisioning.attestation]\nmethod = "symmetric_key"\n'
    b'registration_id = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"\n'
    b'symmetric_key = { value = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=" }\n'
) * 3
SHA = hashlib.sha256(CONFIG).hexdigest()


def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
