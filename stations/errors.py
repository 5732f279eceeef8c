"""Errors raised by the station's device side, all under one base class so the agent can catch them.

Responsible for: the exception types and what they carry (an operator-readable one-line message,
and whether retrying the unit may help). Not responsible for: deciding retries or reporting them on
the bus (that is the station agent's job).
"""

from __future__ import annotations


class StationError(Exception):
    """Base of every error the device side of a station raises."""

    retryable: bool = True


class LinkError(StationError):
    """The serial port could not be opened, or failed/vanished while in use."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(" ".join(message.split()))  # always one line, whatever the OS said
        self.retryable = retryable


class PortVanished(LinkError):
    """The port disappeared mid-operation (cable pulled, device reset, USB re-enumerated)."""


class NoResponse(StationError):
    """The device did not answer a command (validly) within the timeout, after bounded retries."""


class ErrorResponse(StationError):
    """The device answered a command with an `E <code> <NAME>` error reply."""

    def __init__(self, command: str, code: int, name: str, detail: str = "") -> None:
        suffix = f": {detail}" if detail else ""
        super().__init__(f"device refused {command}: E {code} {name}{suffix}")
        self.command = command
        self.code = code
        self.name = name
        self.detail = detail


class FlashError(StationError):
    """A config could not be written AND verified by read-back; `reason` says why."""

    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class FlashInterrupted(FlashError, PortVanished):
    """The port vanished mid-flash: the write is unverified (a FlashError) and the device is gone.

    Being a `PortVanished` too lets a caller handle "device unplugged" in one place for every
    operation, while `write_config`'s contract (FlashError on any unverified write) still holds.
    """

    def __init__(self, reason: str) -> None:
        FlashError.__init__(self, reason, retryable=True)


class ParseError(ValueError):
    """Device output a driver cannot trust; `reason` says why in plain words (raised by pure parsers).

    Not a `StationError`: a driver turns it into `NoResponse`/`FlashError` with the operation's context.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
