"""Helpers shared by command modules: loading settings, waiting for a stop signal."""

from __future__ import annotations

import argparse
import signal
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
