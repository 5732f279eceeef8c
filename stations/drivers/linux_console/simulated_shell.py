"""The shell of a simulated Linux console: just the commands `LinuxConsoleDriver` uses.

Responsible for: tokenising a command line (`;`, `&&`, quotes, `>`, `>>`, `$?`), running `echo`,
`export`, `stty`, `umask`, `cat`, `printf`, `touch`, `base64 -d`, `chmod`, `mv`, `mkdir -p`,
`sha256sum`, `rm`, `fold -w`, `sudo -n`, `sh -c`, `iotedge` (config apply, system restart|status,
check --output json: see `stations.sim_iotedge`), `reboot` against read-only identity files (sysfs,
device tree, DMI, os-release) plus files stored under `flash_dir` mirroring device paths; and the
storage faults (corrupted write, wrong read-back hash).
Not responsible for: the login, the tty, echo or line faults (`stations.drivers.linux_console.simulator`).
Production code (demos, tests); it never touches a path outside `flash_dir`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shlex
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Protocol

from stations.drivers.linux_console.simulated_iotedge import CONFIG_PATH, check_json, system_status

__all__ = ["SimulatedShell", "StorageFaults"]

_Outcome = tuple[int, bytes, bytes]  # exit code, stdout, stderr
_OPERATORS = frozenset({";", "&&"})


class StorageFaults(Protocol):
    """The fault switches the shell reads (a `ConsoleFaults` provides them)."""

    corrupt_write: bool
    wrong_hash: bool
    edge_runtime_error: bool


class _Failure(Exception):
    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class SimulatedShell:
    """Run command lines; `echo_enabled`, `prompt`, `committed` and the request flags are its state."""

    def __init__(self, identity_files: dict[str, bytes], flash_dir: Path, faults: StorageFaults) -> None:
        self.identity_files = identity_files
        self.flash_dir = flash_dir
        self.faults = faults
        self.status = 0
        self.prompt = "root@edge:~# "
        self.echo_enabled = True
        self.committed: Path | None = None
        self.reboot_requested = False
        self.restart_requested = False
        self._commands: dict[str, Callable[[list[str]], _Outcome]] = {
            "echo": lambda a: (0, " ".join(a).encode() + b"\n", b""),
            "true": lambda a: (0, b"", b""),
            "umask": lambda a: (0, b"", b""),
            "export": self._export,
            "stty": self._stty,
            "cat": self._cat,
            "printf": self._printf,
            "touch": self._touch,
            "base64": self._base64,
            "chmod": self._chmod,
            "mv": self._mv,
            "mkdir": self._mkdir,
            "sha256sum": self._sha256sum,
            "rm": self._rm,
            "fold": self._fold,
            "iotedge": self._iotedge,
            "reboot": self._reboot,
        }

    def execute(self, line: str) -> bytes:
        """Run one command line; return what it prints (stdout and stderr, as on a tty)."""
        try:
            tokens = list(_lexer(line))
        except ValueError:
            self.status = 2
            return b"sh: syntax error: unterminated quoted string\n"
        printed, words, operator = bytearray(), [], ";"
        for token in [*tokens, ";"]:
            if token not in _OPERATORS:
                words.append(token)
                continue
            if words and (operator == ";" or self.status == 0):
                printed += self._simple(words)
            words, operator = [], token
        return bytes(printed)

    def _simple(self, words: list[str]) -> bytes:
        words = [word.replace("$?", str(self.status)) for word in words]
        try:
            words, redirect = _redirection(words)
            if words[0] == "sudo":
                words = [w for w in words[1:] if w != "-n"]
            if words[:2] == ["sh", "-c"] and len(words) == 3:
                return self.execute(words[2])
            command = self._commands.get(words[0])
            if command is None:
                raise _Failure(f"sh: {words[0]}: not found", 127)
            self.status, out, err = command(words[1:])
            if redirect is not None:
                self._write(redirect[1], out, append=redirect[0] == ">>")
                out = b""
            return out + err
        except _Failure as exc:
            self.status = exc.status
            return f"{exc}\n".encode()

    # --- files --------------------------------------------------------------------------------

    def host_path(self, device_path: str) -> Path:
        """Map an absolute device path into `flash_dir`, refusing anything that could escape it."""
        pure = PurePosixPath(device_path)
        if not pure.is_absolute() or any(part in ("..", ".") for part in pure.parts):
            raise _Failure(f"sh: {device_path}: Permission denied")
        return self.flash_dir.joinpath(*pure.parts[1:])

    def _read(self, path: str, who: str) -> bytes:
        if path in self.identity_files:
            return self.identity_files[path]
        try:
            return self.host_path(path).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise _Failure(f"{who}: {path}: No such file or directory") from None

    def _write(self, path: str, data: bytes, *, append: bool = False) -> None:
        if path in self.identity_files or path.startswith(("/sys/", "/proc/")):
            raise _Failure(f"sh: {path}: Read-only file system")
        target = self.host_path(path)
        if not target.parent.is_dir():
            raise _Failure(f"sh: {path}: No such file or directory")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o600)
        with os.fdopen(fd, "ab" if append else "wb") as handle:
            handle.write(data)

    # --- commands -----------------------------------------------------------------------------

    def _export(self, args: list[str]) -> _Outcome:
        for arg in args:
            name, _, value = arg.partition("=")
            if name == "PS1":
                self.prompt = value
        return 0, b"", b""

    def _stty(self, args: list[str]) -> _Outcome:
        if "-echo" in args:
            self.echo_enabled = False
        if "echo" in args:
            self.echo_enabled = True
        return 0, b"", b""

    def _cat(self, args: list[str]) -> _Outcome:
        return 0, b"".join(self._read(path, "cat") for path in args), b""

    def _printf(self, args: list[str]) -> _Outcome:
        if not args:
            raise _Failure("printf: usage: printf format [arguments]", 2)
        fmt, values = args[0].replace("\\n", "\n"), args[1:] or [""]
        return 0, "".join(fmt.replace("%s", value) for value in values).encode(), b""

    def _touch(self, args: list[str]) -> _Outcome:
        for path in args:
            self._write(path, b"", append=True)
        return 0, b"", b""

    def _base64(self, args: list[str]) -> _Outcome:
        if args[:1] != ["-d"] or len(args) != 2:
            raise _Failure("base64: only `base64 -d FILE` is supported here")
        try:
            data = base64.b64decode(self._read(args[1], "base64"), validate=True)
        except binascii.Error:
            raise _Failure("base64: invalid input") from None
        if self.faults.corrupt_write and data:
            data = bytes([data[0] ^ 0x01]) + data[1:]
        return 0, data, b""

    def _chmod(self, args: list[str]) -> _Outcome:
        mode, path = args
        self.host_path(path).chmod(int(mode, 8))
        return 0, b"", b""

    def _mv(self, args: list[str]) -> _Outcome:
        source, target = [a for a in args if a != "-f"]
        destination = self.host_path(target)
        try:
            os.replace(self.host_path(source), destination)
        except FileNotFoundError:
            raise _Failure(f"mv: cannot stat '{source}': No such file or directory") from None
        self.committed = destination
        return 0, b"", b""

    def _mkdir(self, args: list[str]) -> _Outcome:
        for path in (a for a in args if a != "-p"):
            self.host_path(path).mkdir(parents=True, exist_ok=True)
        return 0, b"", b""

    def _sha256sum(self, args: list[str]) -> _Outcome:
        lines = []
        for path in args:
            data = self._read(path, "sha256sum") + (b"!" if self.faults.wrong_hash else b"")
            lines.append(f"{hashlib.sha256(data).hexdigest()}  {path}\n")
        return 0, "".join(lines).encode(), b""

    def _rm(self, args: list[str]) -> _Outcome:
        for path in (a for a in args if a != "-f"):
            self.host_path(path).unlink(missing_ok=True)
        return 0, b"", b""

    def _fold(self, args: list[str]) -> _Outcome:
        if len(args) != 3 or args[0] != "-w" or not args[1].isdigit() or int(args[1]) < 1:
            raise _Failure("fold: only `fold -w WIDTH FILE` is supported here")
        width, lines = int(args[1]), []
        for line in self._read(args[2], "fold").decode(errors="replace").splitlines():
            lines += [line[i : i + width] for i in range(0, len(line), width)] or [""]
        return 0, "".join(f"{line}\n" for line in lines).encode(), b""

    def _iotedge(self, args: list[str]) -> _Outcome:
        if args == ["config", "apply"]:
            return 0, b"Azure IoT Edge has been configured successfully!\n", b""
        if args == ["system", "restart"]:
            self.restart_requested = True
            return 0, b"", b""
        if args in (["system", "status"], ["check", "--output", "json"]):
            configured = self.host_path(CONFIG_PATH).is_file()
            broken = self.faults.edge_runtime_error
            rc, text = system_status(broken) if args[1] == "status" else check_json(configured, broken)
            return rc, text.encode(), b""
        raise _Failure(f"iotedge: unsupported arguments {' '.join(args)}", 2)

    def _reboot(self, args: list[str]) -> _Outcome:
        self.reboot_requested = True
        return 0, b"", b""


def _lexer(line: str) -> shlex.shlex:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&<>|")
    lexer.whitespace_split = True
    return lexer


def _redirection(words: list[str]) -> tuple[list[str], tuple[str, str] | None]:
    """Split off a trailing `> file` / `>> file`."""
    if len(words) >= 3 and words[-2] in (">", ">>"):
        return words[:-2], (words[-2], words[-1])
    if not words or any(w in (">", ">>", "<", "|") for w in words):
        raise _Failure("sh: syntax error", 2)
    return words, None
