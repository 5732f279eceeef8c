"""Draw a PNG preview of a label's QR code (the only module that imports segno).

Responsible for: a PNG whose QR code reads back as the registration ID, for the operator's screen and
for tests. Not responsible for: the printed label itself (`stations.labels.zpl`).
"""

from __future__ import annotations

from pathlib import Path

import segno


def write_qr_png(data: str, path: Path, *, scale: int = 6) -> Path:
    """Write a PNG with a QR code of `data` (error correction M, as on the printed label) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    segno.make(data, error="m", micro=False).save(str(path), kind="png", scale=scale, border=4)
    return path
