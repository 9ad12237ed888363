"""The reconciler each worker runs on a timer: no fleet needs Celery beat to recover.

Runs whose lease expired (a worker died or froze) are queued again or failed when their
attempts are spent; queued runs nobody claimed for a while (a message lost with the broker)
are published again. Both are safe to run in every worker at once: the state changes are
conditional UPDATEs and a duplicate message is dropped by the claim.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from celery import Celery
from celery.signals import worker_ready

from service.config import Settings, load_settings
from service.db import get_engine
from service.lifecycle import reap_expired_leases, stale_queued_runs
from workers.dispatch import publish_run

log = logging.getLogger(__name__)


def reconcile_once(app: Celery, settings: Settings) -> int:
    """One pass; the number of runs published again."""
    engine = get_engine(settings.database_url)
    dispatches = reap_expired_leases(engine) + stale_queued_runs(
        engine, timedelta(seconds=settings.resend_after_seconds)
    )
    for dispatch in dispatches:
        publish_run(app, dispatch.run_id, dispatch.queue, dispatch.priority)
        log.warning("run %s: published again to queue %s", dispatch.run_id, dispatch.queue)
    return len(dispatches)


class Reaper(threading.Thread):
    def __init__(self, app: Celery, settings: Settings) -> None:
        super().__init__(name="expq-reaper", daemon=True)
        self.app = app
        self.settings = settings
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.settings.reap_seconds):
            try:
                reconcile_once(self.app, self.settings)
            except Exception:  # noqa: BLE001 - a broker or database blip: next pass retries
                log.warning(
                    "reaper pass failed; retrying in %ss", self.settings.reap_seconds, exc_info=True
                )


@worker_ready.connect
def _start_reaper(sender, **_kwargs) -> None:  # noqa: ANN001 - Celery's signal signature
    Reaper(sender.app, load_settings()).start()
