"""What the driver tests flash and wait for: one realistic IoT Edge config, its digest."""

from __future__ import annotations

import hashlib

CONFIG_PATH = "/etc/aziot/config.toml"
CONFIG = (
    b'[provisioning]\nsource = "dps"\nglobal_endpoint = "https://global.azure-devices-provisioning.net/"\n'
    b'id_scope = "0ne00A1B2C3"\n\n[provisioning.attestation]\nmethod = "symmetric_key"\n'
    b'registration_id = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"\n'
    b'symmetric_key = { value = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=" }\n'
) * 3
SHA = hashlib.sha256(CONFIG).hexdigest()
