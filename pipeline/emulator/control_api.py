"""The emulator's control API, a test instrument: `/_emulator/faults`, `/_emulator/state`, `/_emulator/reset`.

Responsible for: switching fault injection at runtime, dumping state (without keys), forgetting all
state. It is unauthenticated by design (bind the emulator to 127.0.0.1) and exempt from faults and quotas.
Not responsible for: what the faults do (limits) or the state itself (store, hub_registry).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.emulator.http import Request, Response, Router
from pipeline.emulator.limits import FaultInjector, FaultSettings

CONTROL_PREFIX = "/_emulator/"


class ControlApi:
    """Routes that drive the emulator from tests (same port as the DPS APIs)."""

    def __init__(
        self, faults: FaultInjector, dump: Callable[[], dict[str, Any]], reset: Callable[[], None]
    ) -> None:
        self.faults = faults
        self.dump = dump
        self.reset = reset

    def install(self, router: Router) -> None:
        router.add("GET", "/_emulator/faults", lambda _: Response(200, self.faults.settings.to_json()))
        router.add("POST", "/_emulator/faults", self._set_faults)
        router.add("GET", "/_emulator/state", lambda _: Response(200, self.dump()))
        router.add("POST", "/_emulator/reset", self._reset)

    def _set_faults(self, request: Request) -> Response:
        settings = FaultSettings.from_json(request.json() or {})
        self.faults.set(settings)
        return Response(200, settings.to_json())

    def _reset(self, _: Request) -> Response:
        self.reset()
        return Response(204)


def is_control(request: Request) -> bool:
    """Whether a request is for the control API (no faults, no quotas)."""
    return request.path.startswith(CONTROL_PREFIX)
