"""Helpers shared by command modules: loading settings, waiting for a stop signal."""

from __future__ import annotations

import argparse
import getpass
import signal
import socket
import threading
from pathlib import Path
from typing import Any

from pipeline.config import Settings, load_settings


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Load settings from --config and the environment, with command-line overrides on top."""
    return load_settings(Path(args.config) if getattr(args, "config", None) else None, **overrides)


def stop_event_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (main thread only), for long-running commands."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def operator_name() -> str:
    """The OS user and host running the command, e.g. `alice@line2-pc` (audit actor of CLI actions)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        user = "unknown-user"
    return f"{user}@{socket.gethostname()}"
