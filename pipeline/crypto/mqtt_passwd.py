"""Mosquitto password-file entries (`mosquitto_passwd` format), so `edgeline station add` can write them.

Responsible for: hashing a password the way Mosquitto 2.x verifies it (`$7$`: PBKDF2-HMAC-SHA512,
12-byte salt, base64) and replacing or appending one user's line in a password file (mode 0600).
Not responsible for: the ACL (pipeline.cli.station_broker) or generating passwords (secrets).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

ITERATIONS = 101  # mosquitto_passwd's default for $7$ hashes
SALT_BYTES = 12


def password_hash(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """The `$7$...` string Mosquitto stores for `password`."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def set_password(path: Path, user: str, password: str) -> None:
    """Write `user`'s entry into the password file, replacing an old one; the file stays 0600."""
    if ":" in user or not user:
        raise ValueError(f"MQTT user name {user!r} must be non-empty and contain no ':'")
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if line.split(":", 1)[0] != user]
    kept.append(f"{user}:{password_hash(password)}")
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(kept) + "\n")
    os.replace(temporary, path)
