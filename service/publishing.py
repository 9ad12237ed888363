"""Publishing the trials a study top-up added, once the transaction that added them committed.

A failure here loses nothing: the trials are queued in the database, and the reaper publishes
again a queued run whose message is missing (workers/reaper.py, within resend_after_seconds
+ reap_seconds). So a broker outage, or a process killed between the commit and the publish,
only delays them.
"""

from __future__ import annotations

import functools
import logging

from service.config import load_settings
from service.errors import BrokerUnavailable
from service.records import Dispatch

log = logging.getLogger(__name__)


@functools.cache
def _app(broker_url: str):  # noqa: ANN202 - a Celery app, imported lazily
    from workers.app import make_app

    return make_app(broker_url)


def publish_trials(added: list[Dispatch]) -> None:
    """Send each new trial's message on this process's broker (EXPQ_BROKER_URL)."""
    if not added:
        return
    from workers.dispatch import publish_run

    app = _app(load_settings().broker_url)
    for sent, dispatch in enumerate(added):
        try:
            publish_run(app, dispatch.run_id, dispatch.queue, dispatch.priority)
        except BrokerUnavailable as exc:
            log.warning(
                "%d new trials queued but not published (%s); the reaper publishes them again",
                len(added) - sent,
                exc,
            )
            return
