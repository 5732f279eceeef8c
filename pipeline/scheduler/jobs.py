"""The periodic jobs (APScheduler 3.x, in the worker process): confirmer, reconciler, retention.

APScheduler is imported only here. Each job runs at most one instance at a time and coalesces missed
runs; a failing run is logged and the next one tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from apscheduler.schedulers.background import BackgroundScheduler

from pipeline.service.confirming import confirm_due_units, tag_twins
from pipeline.service.context import Context
from pipeline.service.reconciling import reconcile
from pipeline.service.retention import prune

log = logging.getLogger(__name__)


def _guarded(name: str, job: Callable[[Context], int], ctx: Context) -> Callable[[], None]:
    def run() -> None:
        try:
            count = job(ctx)
            if count:
                log.debug("%s: %d unit(s)", name, count)
        except Exception as exc:
            log.warning("%s run failed: %s: %s", name, type(exc).__name__, exc)

    return run


class PipelineScheduler:
    """Starts and stops the confirmer, reconciler and retention jobs.

    Twin tagging after assignment (IoT Hub round trips over HTTPS) runs on its own thread, so a slow
    hub never delays the next confirmation round.
    """

    def __init__(self, ctx: Context) -> None:
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._tagger = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twin-tagger")
        settings = ctx.settings

        def confirm(job_ctx: Context) -> int:
            return confirm_due_units(job_ctx, lambda units: self._tagger.submit(tag_twins, job_ctx, units))

        for name, job, every in (
            ("confirmer", confirm, settings.confirm_interval_seconds),
            ("reconciler", reconcile, settings.reconcile_interval_seconds),
            ("retention", prune, settings.retention_interval_seconds),
        ):
            self._scheduler.add_job(
                _guarded(name, job, ctx),
                "interval",
                seconds=every,
                id=name,
                name=name,
                max_instances=1,
                coalesce=True,
            )

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        self._scheduler.shutdown(wait=True)
        self._tagger.shutdown(wait=True, cancel_futures=True)
