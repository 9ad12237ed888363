"""The reconciler each worker runs on a timer: no fleet needs Celery beat to recover.

Every `reap_seconds`, in every worker's main process:

- runs whose lease expired (a worker died, froze or lost the database) are queued again and
  published, or failed with the reason once they lost `max_attempts` attempts (a worker's cold
  shutdown gives its runs back itself, workers/tasks.py, and those attempts do not count);
- queued runs that waited longer than `resend_after_seconds` and whose message is missing
  (lost with a Redis restart, a submitter killed between insert and publish, a worker killed
  between its ack and its claim) are published again. On Redis exactly those: the reaper reads
  the run ids of the messages the queue's lists and the unacked hash hold. RabbitMQ cannot
  show a message without delivering it, so there the broker's count of waiting messages is
  compared with the queued runs, and when it falls short every stale run of the queue is
  published again; the claim drops the duplicates. A plain backlog is left alone either way,
  so that a long queue is not flooded with duplicates.

Recovery bounds, with one live worker anywhere in the fleet:
  a pool process that dies          → queued again once the main process sees it die, in
                                      0.1-5 s, without the lease wait (workers/tasks.py)
  a whole worker killed or frozen   → within lease_seconds + reap_seconds of its last renewal
  a worker frozen inside a write    → within max(lease_seconds, TRANSACTION_IDLE_TIMEOUT_SECONDS)
    (PostgreSQL)                      + reap_seconds of the freeze; every other run as above,
                                      since a pass skips the rows another transaction holds
  a lost message                    → within resend_after_seconds + reap_seconds
then claimed as soon as a worker of its queue is free. On SQLite a writer frozen inside its
transaction holds the whole database until it resumes or dies: nothing outside the process can
end it, and every other writer fails after the busy timeout meanwhile.

All of it is safe to run in every worker at once: each state change is a conditional UPDATE
that one reaper wins, and a duplicate message is dropped by the claim.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from service.config import Settings, load_settings
from service.db import get_engine
from service.lifecycle import (
    Dispatch,
    count_queued,
    queued_backlog,
    reap_expired_leases,
    stale_run_ids,
    take_stale_runs,
)
from workers.dispatch import broker_backlog, held_run_ids, publish_run

log = logging.getLogger(__name__)


def reconcile_once(app: Celery, settings: Settings) -> list[Dispatch]:
    """One pass; the runs published again."""
    engine = get_engine(settings.database_url)
    dispatches = reap_expired_leases(engine)
    for dispatch in dispatches:
        publish_run(app, dispatch.run_id, dispatch.queue, dispatch.priority)
        log.warning("run %s: lease expired; queued again on %s", dispatch.run_id, dispatch.queue)
    older_than = timedelta(seconds=settings.resend_after_seconds)
    for queue, queued in queued_backlog(engine, older_than).items():
        try:
            resent = _resend_missing(app, engine, queue, queued, older_than)
        except Exception as exc:  # noqa: BLE001 - down, or still loading its data: ask again
            log.info("queue %s: the broker cannot count its messages (%s)", queue, exc)
            continue
        for dispatch in resent:
            publish_run(app, dispatch.run_id, dispatch.queue, dispatch.priority)
        dispatches += resent
    return dispatches


def _resend_missing(
    app: Celery,
    engine,
    queue: str,
    queued: int,
    older_than: timedelta,  # noqa: ANN001
) -> list[Dispatch]:
    """The stale queued runs of `queue` to publish again, each taken by this reaper alone."""
    held = held_run_ids(app, queue, older_than.total_seconds())
    if held is not None:
        missing = [
            run_id for run_id in stale_run_ids(engine, queue, older_than) if run_id not in held
        ]
        resent = (
            take_stale_runs(engine, queue, older_than, run_ids=missing[:1000]) if missing else []
        )
        if resent:
            log.warning(
                "queue %s: %d stale runs have no message; published them again",
                queue,
                len(resent),
            )
        return resent
    waiting, in_flight = broker_backlog(app, queue)
    count = waiting + count_queued(engine, in_flight)
    if count >= queued:
        return []  # every queued run may still have its message: a backlog, not a loss
    resent = take_stale_runs(engine, queue, older_than)
    if resent:
        log.warning(
            "queue %s: %d runs queued, %d messages held; published %d stale runs again",
            queue,
            queued,
            count,
            len(resent),
        )
    return resent


class Reaper(threading.Thread):
    def __init__(self, app: Celery, settings: Settings) -> None:
        super().__init__(name="expq-reaper", daemon=True)
        self.app = app
        self.settings = settings
        self.stopped = threading.Event()
        self.woken = threading.Event()

    def wake(self) -> None:
        """Run a pass now (a pool process died holding a run)."""
        self.woken.set()

    def stop(self) -> None:
        self.stopped.set()
        self.woken.set()

    def run(self) -> None:
        while True:
            self.woken.wait(self.settings.reap_seconds)
            self.woken.clear()
            if self.stopped.is_set():
                return
            try:
                reconcile_once(self.app, self.settings)
            except Exception as exc:  # noqa: BLE001 - a broker or database blip: next pass retries
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning(
                    "reaper pass failed (%s: %s); retrying in %ss",
                    type(exc).__name__,
                    first,
                    self.settings.reap_seconds,
                )


_reaper: Reaper | None = None


def wake_reaper() -> None:
    if _reaper is not None:
        _reaper.wake()


@worker_ready.connect
def _start_reaper(sender, **_kwargs) -> None:  # noqa: ANN001 - Celery's signal signature
    global _reaper
    _reaper = Reaper(sender.app, load_settings())
    _reaper.start()


@worker_shutdown.connect
def _stop_reaper(**_kwargs) -> None:  # noqa: ANN003 - Celery's signal signature
    if _reaper is not None:
        _reaper.stop()
