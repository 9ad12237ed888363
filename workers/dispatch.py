"""Publishing a run to the broker: only its id travels, on the queue its device picks."""

from __future__ import annotations

import base64
import json
import time

from celery import Celery
from kombu import Producer

from service.config import mask_secrets, mask_url
from service.errors import BrokerUnavailable
from workers.app import TRAIN_TASK
from workers.brokers import is_redis

QUEUE_BY_DEVICE = {"cuda": "gpu", "cpu": "cpu", "auto": "auto"}
MAX_PRIORITY = 9


def queue_for_device(device: str) -> str:
    return QUEUE_BY_DEVICE[device]


def broker_error(app: Celery, exc: BaseException) -> BrokerUnavailable:
    """One line naming the masked broker URL; the password never appears, even inside the
    transport's own message."""
    url = app.conf.broker_url
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return BrokerUnavailable(f"broker unreachable at {mask_url(url)}: {mask_secrets(reason, url)}")


def publish_run(
    app: Celery, run_id: int, queue: str, priority: int = 0, producer: Producer | None = None
) -> None:
    """Send `train_run(run_id)`; priority 9 is the most urgent, as on RabbitMQ.

    kombu's Redis transport serves priority 0 first, so there the number is flipped on the way
    out. A batch passes one `producer` (from `app.producer_or_acquire()`) for all its messages.
    """
    try:
        app.send_task(
            TRAIN_TASK,
            args=[run_id],
            queue=queue,
            priority=MAX_PRIORITY - priority if is_redis(app.conf.broker_url) else priority,
            retry=False,
            producer=producer,
        )
    except Exception as exc:  # noqa: BLE001 - kombu raises many transport errors
        raise broker_error(app, exc) from exc


def broker_backlog(app: Celery, queue: str) -> tuple[int, list[int]]:
    """What the broker holds for `queue`: (messages waiting, every priority level together;
    run ids of its train messages delivered to a worker and not yet acked)."""
    with app.pool.acquire(block=True, timeout=5) as connection:
        channel = connection.default_channel
        # Declared as the workers declare it: RabbitMQ refuses other arguments.
        waiting = app.amqp.queues[queue].bind(channel).queue_declare().message_count
        return waiting, _unacked_run_ids(channel, queue)


def held_run_ids(app: Celery, queue: str, delivered_within: float) -> set[int] | None:
    """The run ids of every train message the broker holds for `queue`: waiting at any
    priority level, or delivered to a worker in the last `delivered_within` seconds and not
    yet acked. None where the broker cannot list its messages without consuming them
    (RabbitMQ).

    A worker acks a run's message as it starts it and takes no message it cannot start at
    once, so one delivered longer ago and still unacked is an orphan: its consumer was killed,
    or lost the broker (a restart) before it could put the message back, and the transport
    restores it only after the visibility timeout (an hour). A message that a worker is moving
    from the list to its unacked hash is in neither for a moment: a run missing from the
    answer may still have its message, never the reverse."""
    if not is_redis(app.conf.broker_url):
        return None
    with app.pool.acquire(block=True, timeout=5) as connection:
        channel = connection.default_channel
        held = set(_unacked_run_ids(channel, queue, time.time() - delivered_within))
        for level in channel.priority_steps:
            for raw in channel.client.lrange(channel._q_for_pri(queue, level), 0, -1):
                run_id = _run_id(json.loads(raw))
                if run_id is not None:
                    held.add(run_id)
        return held


def _run_id(message: dict) -> int | None:
    """The run id of one of our train messages as kombu's Redis transport stores it."""
    try:
        if message["headers"]["task"] != TRAIN_TASK:
            return None
        return int(json.loads(base64.b64decode(message["body"]))[0][0])
    except (ValueError, KeyError, IndexError, TypeError):
        return None  # not one of ours


def _unacked_run_ids(channel, queue: str, delivered_after: float = 0.0) -> list[int]:  # noqa: ANN001 - a kombu channel
    """kombu's Redis transport keeps each delivered, unacked message in one hash until the ack
    (or until it is restored after the visibility timeout): [message, exchange, routing key],
    and its delivery time in a sorted set. Those delivered after `delivered_after` (epoch
    seconds) count. Other transports have no such hash: nothing is counted as in flight there."""
    key, client = getattr(channel, "unacked_key", None), getattr(channel, "client", None)
    if key is None or client is None:
        return []
    tags = client.zrangebyscore(channel.unacked_index_key, delivered_after, "+inf")
    run_ids = []
    for raw in client.hmget(key, tags) if tags else []:
        if raw is None:
            continue  # acked between the two reads
        try:
            message, _exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        run_id = _run_id(message) if routing_key == queue else None
        if run_id is not None:
            run_ids.append(run_id)
    return run_ids
