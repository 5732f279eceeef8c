"""The approver port: ask the MES about one unit."""

from __future__ import annotations

from typing import Protocol

from pipeline.domain.approval import ApprovalDecision, ApprovalRequest


class Approver(Protocol):
    """Asks whether a unit may be provisioned.

    `decide` raises `ApprovalUnavailable` when asking again may help (timeout, connection refused,
    HTTP 5xx/429) and `ApprovalError` when the answer cannot be used (malformed, HTTP 4xx).
    """

    def decide(self, request: ApprovalRequest) -> ApprovalDecision: ...

    def describe(self) -> str:
        """Where the MES is, for messages (never a credential)."""
