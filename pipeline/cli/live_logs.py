"""Log lines above a live rich display instead of through it.

A `logging.StreamHandler` writes straight to the stream it was given, past rich's Live, so its lines
bleed into the live table. While `logs_above(console)` is active the root logger's handlers are
replaced by one RichHandler on the Live's own console, which prints each record above the live region.
Not responsible for: the live display itself (the command that owns it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.logging import RichHandler


@contextmanager
def logs_above(console: Console) -> Iterator[None]:
    """Route every log record through `console` for the duration; restore the handlers afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = saved
