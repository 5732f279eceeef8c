"""Ask a local program: the unit as JSON on its standard input, the decision as JSON on its output.

For MES integrations that are easier as a script (a database query, a vendor CLI). Exit status 0 with
a decision is an answer; a non-zero status or a timeout means the MES could not be asked.
"""

from __future__ import annotations

import json
import shlex
import subprocess

from pipeline.domain.approval import (
    ApprovalDecision,
    ApprovalError,
    ApprovalRequest,
    ApprovalUnavailable,
    parse_decision,
)


class CommandApprover:
    """Run `command` once per unit."""

    def __init__(self, command: str, *, timeout: float) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("approval_command is empty")
        self.timeout = timeout

    def describe(self) -> str:
        return f"MES command {self.argv[0]}"

    def decide(self, request: ApprovalRequest) -> ApprovalDecision:
        try:
            done = subprocess.run(
                self.argv,
                input=json.dumps(request.as_json()).encode(),
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ApprovalUnavailable(f"{self.describe()} gave no answer within {self.timeout:g} s") from None
        except OSError as exc:
            raise ApprovalUnavailable(f"{self.describe()} could not run: {exc.strerror or exc}") from None
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise ApprovalUnavailable(f"{self.describe()} exited {done.returncode}: {said[0][:120]}")
        try:
            return parse_decision(json.loads(done.stdout))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ApprovalError(f"{self.describe()} printed no JSON decision: {done.stdout[:60]!r}") from None
        except ApprovalError as exc:
            raise ApprovalError(f"{self.describe()}: {exc}") from None
