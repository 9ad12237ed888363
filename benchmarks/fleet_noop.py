"""The baseline of benchmarks/fleet_speed.py: a plain Celery app whose one task does nothing.

Configured like expq's app (JSON, late acks, prefetch 1, prefork) on the broker named by
FLEET_NOOP_BROKER, with a Redis result backend so that a caller can wait for the round trip.
Its worker: `celery -A benchmarks.fleet_noop worker -Q noop -c 1 -P prefork`.
"""

from __future__ import annotations

import os

from celery import Celery

BROKER = os.environ.get("FLEET_NOOP_BROKER", "redis://127.0.0.1:6379/14")

app = Celery("noop", broker=BROKER, backend=BROKER)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue="noop",
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="noop")
def noop() -> None:
    """Nothing: the time measured is Celery's own."""
