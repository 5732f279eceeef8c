"""Retention (scheduler job): prunes tables that only serve delivery, so they stay small.

Published outbox rows are no longer needed once the broker acknowledged them; processed-message records
only need to outlive any redelivery of their message (`processed_retention_hours`). Each chunk of at
most `retention_batch` rows is deleted in its own short transaction, oldest first, so a large backlog
never holds locks for long. Unpublished outbox rows are never deleted.
Not responsible for: the audit log (append-only and complete by design) or units.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from pipeline.service.context import Context
from pipeline.service.unit_of_work import UnitOfWork

MAX_CHUNKS_PER_RUN = 50  # bound one run; the next run continues


def prune(ctx: Context) -> int:
    """Delete expired delivery records; return how many rows went."""
    outbox_before, processed_before = cutoffs(ctx)
    limit = max(ctx.settings.retention_batch, 1)
    removed = _chunked(ctx, lambda uow: uow.outbox.prune_published(outbox_before, limit), limit)
    removed += _chunked(ctx, lambda uow: uow.processed.prune(processed_before, limit), limit)
    return removed


def _chunked(ctx: Context, delete_chunk: Callable[[UnitOfWork], int], limit: int) -> int:
    total = 0
    for _ in range(MAX_CHUNKS_PER_RUN):
        with ctx.uow_factory() as uow:
            count = delete_chunk(uow)
            uow.commit()
        total += count
        if count < limit:
            break
    return total


def cutoffs(ctx: Context) -> tuple[datetime, datetime]:
    """The (outbox, processed) cut-off times: rows older than these may go."""
    now = ctx.clock()
    return (
        now - timedelta(hours=ctx.settings.outbox_retention_hours),
        now - timedelta(hours=ctx.settings.processed_retention_hours),
    )
