"""Signed audit exports: JSON Lines carrying the records, the chain links they cover, and an Ed25519
signature of that coverage, so that an auditor can check an export offline (`audit verify-export`).

Format (one JSON object per line): a header `{"format": "edgeline-audit-export/1", ...}`, one
`{"record": {...}}` per audit record in id order (with `prev_hash` and `hash`), and a trailer
`{"covers": {first_id, first_prev_hash, last_id, last_hash, count}, "signature": base64}`. The signature
is over the canonical JSON of header + covers; each record is tied to it by the hash chain, so editing,
removing or inserting any record breaks either a hash, the id sequence or the covered head.

Responsible for: writing such a file as a stream (the trailer is computed on the way) and verifying one.
Not responsible for: reading the database (pipeline.db.audit_api_queries) or key files (pipeline.crypto).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pipeline.crypto.site_signing import SiteSigner, verify_signature
from pipeline.db.audit import AuditRecordView
from pipeline.db.audit_chain import canonical_json, record_hash

FORMAT = "edgeline-audit-export/1"


@dataclass(frozen=True, slots=True)
class ExportCheck:
    """Outcome of verifying an export: ok, or the first bad record and why."""

    ok: bool
    records: int
    first_bad_id: int | None
    reason: str


def signed_export_lines(
    records: Iterable[tuple[AuditRecordView, str]], signer: SiteSigner, *, scope: dict[str, Any]
) -> Iterator[str]:
    """Yield the export's lines (each ending in a newline) while reading `records` once."""
    header = {"format": FORMAT, "created_at": datetime.now(UTC).isoformat(), "scope": scope}
    yield canonical_json(header) + "\n"
    first: tuple[int, str] | None = None
    last, count = (0, ""), 0
    for record, prev_hash in records:
        body = {**record.to_dict(), "at": record.at.astimezone(UTC).isoformat(), "prev_hash": prev_hash}
        first = first or (record.id, prev_hash)
        last, count = (record.id, record.hash), count + 1
        yield canonical_json({"record": body}) + "\n"
    covers = {
        "first_id": first[0] if first else None,
        "first_prev_hash": first[1] if first else None,
        "last_id": last[0] if first else None,
        "last_hash": last[1] if first else None,
        "count": count,
    }
    signature = signer.sign(_signed_message(header, covers))
    yield canonical_json({"covers": covers, "signature": base64.b64encode(signature).decode()}) + "\n"


def _signed_message(header: dict[str, Any], covers: dict[str, Any]) -> bytes:
    return canonical_json({"header": header, "covers": covers}).encode("utf-8")


class _Bad(Exception):
    def __init__(self, record_id: int | None, reason: str) -> None:
        super().__init__(reason)
        self.record_id, self.reason = record_id, reason


def verify_export(lines: Iterable[str], public: Ed25519PublicKey) -> ExportCheck:
    """Check signature, chain links, hashes and coverage of an export; name the first bad record."""
    parsed = _parse(lines)
    if isinstance(parsed, ExportCheck):
        return parsed
    header, bodies, trailer = parsed
    covers = trailer.get("covers")
    try:
        signature = base64.b64decode(str(trailer.get("signature", "")), validate=True)
    except binascii.Error:
        return ExportCheck(False, 0, None, "the trailer's signature is not base64")
    if not isinstance(covers, dict) or not verify_signature(
        public, signature, _signed_message(header, covers)
    ):
        return ExportCheck(
            False, 0, None, "signature does not match (header or trailer altered, or wrong key)"
        )
    try:
        _walk(bodies, covers)
    except _Bad as bad:
        return ExportCheck(False, len(bodies), bad.record_id, bad.reason)
    return ExportCheck(True, len(bodies), None, "ok")


def _parse(lines: Iterable[str]) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]] | ExportCheck:
    objects: list[Any] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            objects.append(json.loads(line))
        except json.JSONDecodeError:
            return ExportCheck(False, 0, None, f"line {number} is not JSON")
    if len(objects) < 2 or not all(isinstance(o, dict) for o in objects):
        return ExportCheck(False, 0, None, "not an edgeline audit export (header or trailer missing)")
    header, trailer = objects[0], objects[-1]
    if header.get("format") != FORMAT:
        return ExportCheck(False, 0, None, f"not an edgeline audit export (format is not {FORMAT})")
    bodies = [o.get("record") for o in objects[1:-1]]
    if not all(isinstance(b, dict) for b in bodies):
        return ExportCheck(False, 0, None, "a line between header and trailer is not a record")
    return header, bodies, trailer


def _walk(bodies: list[dict[str, Any]], covers: dict[str, Any]) -> None:
    expected_id: int = covers.get("first_id") or 0
    prev_hash = str(covers.get("first_prev_hash"))
    for body in bodies:
        rid = body.get("id")
        if not isinstance(rid, int):
            raise _Bad(None, "a record without an integer id")
        if rid < expected_id:
            raise _Bad(
                rid, f"record {rid} was inserted (or repeated): the previous record is {expected_id - 1}"
            )
        if rid > expected_id:
            raise _Bad(expected_id, f"record {expected_id} was removed (the next record is {rid})")
        if body.get("prev_hash") != prev_hash:
            raise _Bad(rid, f"record {rid} was inserted or edited: its link to record {rid - 1} is broken")
        if _hash(body, prev_hash) != body.get("hash"):
            raise _Bad(rid, f"record {rid} was edited: its content does not match its hash")
        expected_id, prev_hash = rid + 1, str(body["hash"])
    last_id = covers.get("last_id")
    if bodies and isinstance(last_id, int) and expected_id - 1 > last_id:
        raise _Bad(last_id + 1, f"record {last_id + 1} was inserted: the signed export ends at {last_id}")
    if bodies and (expected_id - 1 != last_id or prev_hash != covers.get("last_hash")):
        raise _Bad(expected_id, f"records after {expected_id - 1} were removed (signed through {last_id})")
    if not bodies and covers.get("count"):
        raise _Bad(covers.get("first_id"), f"record {covers.get('first_id')} and all after it were removed")


def _hash(body: dict[str, Any], prev_hash: str) -> str | None:
    try:
        return record_hash(
            prev_hash,
            id=body["id"],
            at=datetime.fromisoformat(body["at"]),
            kind=body["kind"],
            actor=body["actor"],
            registration_id=body.get("registration_id"),
            detail_json=canonical_json(body.get("detail")),
        )
    except (KeyError, TypeError, ValueError):
        return None
