"""The Celery app, configured in one dict: JSON only, acks on start, prefetch 1, three queues.

The lease, not the message, owns a run: a train message is acknowledged when a pool process
starts it, just before the claim, not when training ends. A late ack held for a whole run
breaks RabbitMQ, which closes the channel of a delivery left unacknowledged longer than its
`consumer_timeout` (30 minutes by default), and the worker then died with "Unrecoverable
error: PreconditionFailed" (celery/celery#6760). Nothing is lost by acking early: a process
that dies after the ack has its claim released by the worker (workers/tasks.py) or its lease
expire, and a run left queued without its message is published again by the reaper.

Priorities on RabbitMQ are native: each queue is declared with `x-max-priority` 9 and a message
carries expq's priority as it is. Queues are durable and messages persistent, so a broker
restart keeps what waits. On Redis kombu emulates them with one list per level (`cpu`,
`cpu:1` ... `cpu:9`) and a worker pops the most urgent non-empty list of all the queues it
consumes. So a priority orders only messages that wait in the broker at the same time; a
message a worker has already started is not overtaken, and a redelivered message goes back to
the list of its own level. expq's --priority 9 (most urgent, as on RabbitMQ) is kombu's level
0; see workers/dispatch.py.
"""

from __future__ import annotations

import ssl
from urllib.parse import parse_qs, urlsplit

from celery import Celery
from kombu import Queue

from service.config import load_settings
from workers.brokers import is_redis
from workers.flow import Flow

QUEUES = ("cpu", "gpu", "auto")
TRAIN_TASK = "expq.train_run"
PRIORITY_LEVELS = 10


def broker_ssl(url: str) -> dict | None:
    """TLS options for a rediss:// URL that names none: verify the server against the system
    CAs. kombu's own default for a bare rediss:// URL is not to verify at all."""
    parts = urlsplit(url)
    if parts.scheme != "rediss" or any(key.startswith("ssl_") for key in parse_qs(parts.query)):
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def make_app(broker_url: str | None = None) -> Celery:
    settings = load_settings()
    url = broker_url or settings.broker_url
    visibility = settings.visibility_timeout_seconds
    app = Celery("expq", broker=url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        result_accept_content=["json"],
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        # With acks on start, a worker whose processes are all busy would otherwise reserve
        # one more message per process. Redis: take none until a process is free; RabbitMQ:
        # stop consuming meanwhile (workers/flow.py). Should a message still wait past the
        # consumer timeout, the channel is closed, the message goes back to the queue for
        # another worker, and this worker reconnects instead of dying.
        worker_disable_prefetch=is_redis(url),
        broker_channel_error_retry=True,
        # Only a late-acked task is cancelled when the connection drops: none here.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_track_started=True,
        task_ignore_result=True,
        task_queues=[
            Queue(name, durable=True, queue_arguments={"x-max-priority": PRIORITY_LEVELS - 1})
            for name in QUEUES
        ],
        task_default_queue="auto",
        task_create_missing_queues=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        broker_use_ssl=broker_ssl(url),
        broker_transport_options={
            "priority_steps": list(range(PRIORITY_LEVELS)),
            "sep": ":",
            "queue_order_strategy": "priority",
            # Any value is safe: a message redelivered while its run trains is dropped by the
            # claim. Shorter only means more such drops; longer, nothing (the reaper, not
            # redelivery, recovers runs).
            "visibility_timeout": visibility,
            "unacked_restore_interval": max(1, min(10, int(visibility / 4))),
            "unacked_restore_throttle": 1,
            # A publisher facing a dead broker gives up in seconds, not kombu's minute.
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
            # A consumer whose BRPOP got no reply this long past its 1 s server timeout (a
            # silent partition) drops the connection and reconnects, instead of waiting for
            # TCP's backed-off retransmission, which came 11 s after a 15 s cut had healed.
            "health_check_interval": 2,
        },
        # On RabbitMQ a worker's control queue was exclusive to its connection: a worker back
        # from a partition shorter than the broker's heartbeat timeout found the queue still
        # locked by its dead connection and stopped ("Unrecoverable error: ResourceLocked").
        # Not exclusive, it is still deleted once unused (control_queue_expires).
        control_queue_exclusive=False,
        worker_hijack_root_logger=False,
        # Task events (for Flower) cost each run a few publishes on its way to the claim: off by
        # default; `celery -A workers.app control enable_events` turns them on in a live fleet.
        worker_send_task_events=False,
    )
    app.conf.include = ["workers.tasks", "workers.reaper", "workers.control"]
    app.steps["consumer"].add(Flow)
    return app


app = make_app()
