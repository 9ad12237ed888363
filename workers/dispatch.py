"""Publishing a run to the broker: only its id travels, on the queue its device picks."""

from __future__ import annotations

from urllib.parse import urlsplit

from celery import Celery

from service.config import mask_url
from service.errors import BrokerUnavailable
from workers.app import TRAIN_TASK

QUEUE_BY_DEVICE = {"cuda": "gpu", "cpu": "cpu", "auto": "auto"}
MAX_PRIORITY = 9


def queue_for_device(device: str) -> str:
    return QUEUE_BY_DEVICE[device]


def publish_run(app: Celery, run_id: int, queue: str, priority: int = 0) -> None:
    """Send `train_run(run_id)`; priority 9 is the most urgent, as on RabbitMQ.

    kombu's Redis transport serves priority 0 first, so the number is flipped on the way out.
    """
    try:
        app.send_task(
            TRAIN_TASK,
            args=[run_id],
            queue=queue,
            priority=MAX_PRIORITY - priority,
            retry=False,
        )
    except Exception as exc:  # noqa: BLE001 - kombu raises many transport errors
        url = app.conf.broker_url
        password = urlsplit(url).password
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if password:
            reason = reason.replace(password, "***")
        raise BrokerUnavailable(f"broker unreachable at {mask_url(url)}: {reason}") from exc
