"""Device-key derivations per second: in process (`cryptography`/hmac) versus inside a SoftHSM2 token.

Prints JSON. Makes its own throw-away SoftHSM2 token (needs Debian's softhsm2). The figure that matters
for the line is the derivation cost per unit next to the pipeline's CPU per unit (benchmarks/README.md):
one derivation per unit at config issue.

    python benchmarks/key_derivation.py --seconds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from pipeline.domain.keys import SecretKey, derive_device_key
from pipeline.keystore.pkcs11 import Pkcs11GroupKeyStore, Pkcs11Token, TokenSettings

MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def rate(derive: object, seconds: float, threads: int = 1) -> float:
    """Derivations per second of `derive(registration_id)` over `seconds`, from `threads` threads."""
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def loop(index: int) -> None:
        n = 0
        while time.monotonic() < stop:
            derive(f"sn-{index}-{n:08d}-mac-02-00-00-00-00-01")  # type: ignore[operator]
            n += 1
        counts[index] = n

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    group_key = SecretKey.generate()
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "tokens").mkdir()
        conf = Path(folder) / "softhsm2.conf"
        conf.write_text(
            f"directories.tokendir = {folder}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n"
        )
        os.environ["SOFTHSM2_CONF"] = str(conf)
        subprocess.run(
            [
                "softhsm2-util",
                "--init-token",
                "--free",
                "--label",
                "bench",
                "--pin",
                "1234",
                "--so-pin",
                "12345678",
            ],
            check=True,
            capture_output=True,
        )
        token = Pkcs11Token(TokenSettings(MODULE, "bench", "1234"))
        store = Pkcs11GroupKeyStore(token)
        handle = store.store("bench", "primary", group_key)
        in_process = rate(lambda rid: derive_device_key(group_key, rid), args.seconds)
        hsm = rate(lambda rid: store.derive(handle, "bench", "primary", rid), args.seconds)
        hsm_4 = rate(lambda rid: store.derive(handle, "bench", "primary", rid), args.seconds, threads=4)
        token.close()
    print(
        json.dumps(
            {
                "in_process_derivations_per_s": round(in_process),
                "softhsm_derivations_per_s": round(hsm),
                "softhsm_derivations_per_s_4_threads": round(hsm_4),
                "softhsm_ms_per_derivation": round(1000 / hsm, 4),
                "in_process_ms_per_derivation": round(1000 / in_process, 4),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
