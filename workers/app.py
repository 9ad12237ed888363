"""The Celery app, configured in one dict: JSON only, late acks, prefetch 1, three queues."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from service.config import load_settings

QUEUES = ("cpu", "gpu", "auto")
TRAIN_TASK = "expq.train_run"


def make_app(broker_url: str | None = None) -> Celery:
    app = Celery("expq", broker=broker_url or load_settings().broker_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        task_ignore_result=True,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="auto",
        task_create_missing_queues=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        broker_transport_options={
            # Redis has no native priorities: kombu emulates ten levels with one list each.
            "priority_steps": list(range(10)),
            "sep": ":",
            "queue_order_strategy": "priority",
            # A publisher facing a dead broker gives up in about a second, not kombu's minute.
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
            "socket_connect_timeout": 2,
            "socket_timeout": 10,
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
    )
    app.conf.include = ["workers.tasks", "workers.reaper"]
    return app


app = make_app()
