"""The periodic jobs (APScheduler 3.x, in the worker process): confirmer, reconciler, retention.

APScheduler is imported only here. Each job runs at most one instance at a time and coalesces missed
runs; a failing run is logged and the next one tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from pipeline.domain.model import Unit
from pipeline.service.confirming import GroupSizes, confirm_due_units, tag_twins
from pipeline.service.context import Context
from pipeline.service.liveness import check_liveness
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
        self.group_sizes = GroupSizes()  # learned by one confirmer run, used by the next

        def confirm(job_ctx: Context) -> int:
            def tag(units: list[Unit]) -> object:
                return self._tagger.submit(tag_twins, job_ctx, units)

            return confirm_due_units(job_ctx, tag, self.group_sizes)

        jobs = [
            ("confirmer", confirm, settings.confirm_interval_seconds),
            ("reconciler", reconcile, settings.reconcile_interval_seconds),
            ("retention", prune, settings.retention_interval_seconds),
        ]
        if settings.online_check and ctx.hub is not None:  # edge: off by default, nothing changes then
            # Units have their own next-check time; the job itself runs at most once a second.
            jobs.append(("liveness", check_liveness, max(settings.online_check_interval_seconds, 1.0)))
        for name, job, every in jobs:
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


# --- web: daily jobs at fixed UTC times (the shift report at each shift boundary) ---


class DailyJobs:
    """Jobs that run every day at fixed UTC times (started by `start_daily_jobs`)."""

    def __init__(self, scheduler: BackgroundScheduler) -> None:
        self._scheduler = scheduler

    def next_runs(self) -> list[tuple[str, datetime]]:
        """(job name, next run time in UTC) of every job, soonest first."""
        runs = [(job.name, job.next_run_time) for job in self._scheduler.get_jobs()]
        return sorted(((n, t.astimezone(UTC)) for n, t in runs if t is not None), key=lambda r: r[1])

    def stop(self) -> None:
        """Stop without waiting for a running job."""
        self._scheduler.shutdown(wait=False)


def start_daily_jobs(jobs: list[tuple[str, int, int, Callable[[], None]]]) -> DailyJobs:
    """Run each (name, hour, minute, job) every day at that UTC time.

    A failing run is logged and the next day's run tries again; a run missed while the process was
    down is not repeated (the on-demand command covers it).
    """
    scheduler = BackgroundScheduler(timezone="UTC")
    for name, hour, minute, job in jobs:

        def run(job: Callable[[], None] = job, name: str = name) -> None:
            try:
                job()
            except Exception as exc:
                log.warning("%s run failed: %s: %s", name, type(exc).__name__, exc)

        scheduler.add_job(
            run,
            "cron",
            hour=hour,
            minute=minute,
            id=f"{name}-{hour:02d}{minute:02d}",
            name=name,
            max_instances=1,
            coalesce=True,
        )
    scheduler.start()
    return DailyJobs(scheduler)
