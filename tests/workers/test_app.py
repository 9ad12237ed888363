"""The Celery app's configuration: TLS, redelivery, acks and priorities on each broker."""

from __future__ import annotations

import ssl

import pytest
from kombu import Connection, Consumer, Queue

from workers.app import broker_ssl, make_app
from workers.dispatch import publish_run


def test_a_bare_rediss_url_verifies_the_server() -> None:
    assert broker_ssl("rediss://:pw@redis.example:6380/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert make_app("rediss://:pw@redis.example:6380/0").connection_for_write().ssl == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED
    }
    # Options in the URL are the user's: kombu reads them, expq adds nothing.
    assert broker_ssl("rediss://redis.example/0?ssl_ca_certs=/ca.pem") is None
    assert broker_ssl("redis://redis.example/0") is None


def test_redelivery_follows_the_configured_visibility_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPQ_VISIBILITY_TIMEOUT_SECONDS", "8")
    options = make_app("redis://127.0.0.1:1/0").conf.broker_transport_options
    assert options["visibility_timeout"] == 8 and options["unacked_restore_interval"] == 2
    monkeypatch.delenv("EXPQ_VISIBILITY_TIMEOUT_SECONDS")
    options = make_app("redis://127.0.0.1:1/0").conf.broker_transport_options
    assert options["visibility_timeout"] == 3600 and options["unacked_restore_interval"] == 10


def test_priority_9_is_served_first_and_fifo_within_a_level(embedded_broker_url: str) -> None:
    """What a consumer of the Redis transport sees: most urgent level first, then in order."""
    app = make_app(embedded_broker_url)
    sent = [(1, 0), (2, 9), (3, 5), (4, 9), (5, 0), (6, 5)]  # (run id, expq priority)
    for run_id, priority in sent:
        publish_run(app, run_id, "cpu", priority)
    received: list[int] = []
    options = app.conf.broker_transport_options
    with Connection(embedded_broker_url, transport_options=options) as connection:
        consumer = Consumer(
            connection,
            [Queue("cpu")],
            callbacks=[lambda body, message: (received.append(body[0][0]), message.ack())],
            accept=["json"],
            prefetch_count=1,
        )
        with consumer:
            while len(received) < len(sent):
                connection.drain_events(timeout=5)
    assert received == [2, 4, 3, 6, 1, 5]


def test_priorities_are_native_on_rabbitmq(rabbitmq_url: str) -> None:
    """The queue is declared durable with x-max-priority 9; 9 is served first, in order within
    a level, and the number travels unflipped."""
    app = make_app(rabbitmq_url)
    sent = [(1, 0), (2, 9), (3, 5), (4, 9), (5, 0), (6, 5)]
    for run_id, priority in sent:
        publish_run(app, run_id, "cpu", priority)
    queue = app.amqp.queues["cpu"]
    assert queue.durable and queue.queue_arguments == {"x-max-priority": 9}
    received: list[tuple[int, int]] = []

    def take(body, message) -> None:  # noqa: ANN001
        received.append((body[0][0], message.properties["priority"]))
        assert message.properties["delivery_mode"] == 2  # persistent
        message.ack()

    with Connection(rabbitmq_url) as connection:
        with Consumer(connection, [queue], callbacks=[take], accept=["json"], prefetch_count=1):
            while len(received) < len(sent):
                connection.drain_events(timeout=5)
    assert received == [(2, 9), (4, 9), (3, 5), (6, 5), (1, 0), (5, 0)]


def test_a_train_message_is_acked_when_it_starts_not_when_it_ends() -> None:
    """The lease owns a run: a run longer than RabbitMQ's consumer timeout must not hold its
    message unacknowledged (celery#6760). On Redis a busy worker reserves nothing more."""
    for url, redis in (("redis://127.0.0.1:1/0", True), ("amqp://127.0.0.1:1//", False)):
        conf = make_app(url).conf
        assert conf.task_acks_late is False and conf.worker_prefetch_multiplier == 1
        assert conf.broker_channel_error_retry is True
        assert conf.worker_disable_prefetch is redis
