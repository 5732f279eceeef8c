"""Pre-provisioning approval: what edgeline asks the factory's MES, and how an answer is read.

Responsible for: the request sent (the unit's identity and where it was scanned), parsing an answer
strictly into an `ApprovalDecision`, and the errors that say what was wrong with an answer.
Not responsible for: transport (webhook or local command adapters in `pipeline.mes`) or what happens to
the unit (`pipeline.service.approving`).

Answer format (JSON object): `decision` is "allow" or "deny" (required); `reason` a string (required for
"deny"); `tags` an object of string values (optional: extra device-twin tags); `iot_hub` a host name
(optional: the hub this unit must go to, one of the linked hubs).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_REASON = 300
MAX_TAGS = 20
_TAG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_HUB = re.compile(r"^[A-Za-z0-9.-]{1,253}$")


class ApprovalError(ValueError):
    """The MES answered, but not in a form edgeline can act on (the message says what is wrong)."""


class ApprovalUnavailable(RuntimeError):
    """The MES did not answer in time or answered with a transient error; asking again may help."""


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """What the MES is asked about one scanned unit."""

    registration_id: str
    serial: str
    mac: str
    station: str
    line: str
    product: str
    batch: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    """The MES's verdict on one unit."""

    allowed: bool
    reason: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    iot_hub: str | None = None
    source: str = "mes"  # "mes", or "fail-open" when the MES was unreachable and policy let the unit pass


def parse_decision(answer: Any) -> ApprovalDecision:
    """Read a decoded JSON answer; raise ApprovalError naming the offending field."""
    if not isinstance(answer, dict):
        raise ApprovalError(f"answer is not a JSON object but {type(answer).__name__}")
    decision = answer.get("decision")
    if decision not in ("allow", "deny"):
        raise ApprovalError(
            f'answer field \'decision\' must be "allow" or "deny", not {str(decision)[:40]!r}'
        )
    reason = answer.get("reason", "")
    if not isinstance(reason, str):
        raise ApprovalError("answer field 'reason' must be a string")
    if decision == "deny" and not reason.strip():
        raise ApprovalError("a \"deny\" answer must give a 'reason' for the operator")
    return ApprovalDecision(
        allowed=decision == "allow",
        reason=_one_line(reason)[:MAX_REASON],
        tags=_tags(answer.get("tags", {})),
        iot_hub=_hub(answer.get("iot_hub")),
    )


def _tags(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ApprovalError("answer field 'tags' must be an object of strings")
    if len(value) > MAX_TAGS:
        raise ApprovalError(f"answer field 'tags' has {len(value)} entries; at most {MAX_TAGS}")
    tags: dict[str, str] = {}
    for name, text in value.items():
        if not _TAG_NAME.match(str(name)):
            raise ApprovalError(f"tag name {str(name)[:40]!r} must be a letter then letters, digits or _")
        if not isinstance(text, str) or len(text) > 128:
            raise ApprovalError(f"tag {name!r} must be a string of at most 128 characters")
        tags[name] = text
    return tags


def _hub(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _HUB.match(value):
        raise ApprovalError("answer field 'iot_hub' must be a hub host name, e.g. hub1.azure-devices.net")
    return value.lower()


def _one_line(text: str) -> str:
    return " ".join(text.split())
