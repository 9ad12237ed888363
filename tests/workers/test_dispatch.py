from __future__ import annotations

import time

import pytest
import redis

from service.demo import free_port
from service.errors import BrokerUnavailable
from workers.app import make_app
from workers.dispatch import publish_run, queue_for_device


def test_devices_pick_their_queues() -> None:
    assert [queue_for_device(d) for d in ("cuda", "cpu", "auto")] == ["gpu", "cpu", "auto"]


def test_only_the_run_id_travels_as_json(embedded_broker_url: str) -> None:
    import json

    publish_run(make_app(embedded_broker_url), 42, "cpu", priority=9)
    client = redis.Redis.from_url(embedded_broker_url)
    raw = client.lpop("cpu")  # priority 9 maps to kombu's level 0, the plain queue name
    message = json.loads(raw)
    assert message["content-type"] == "application/json"
    assert json.loads(__import__("base64").b64decode(message["body"]))[0] == [42]


def test_an_unreachable_broker_fails_fast_without_the_password() -> None:
    app = make_app(f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        publish_run(app, 1, "cpu")
    assert time.monotonic() - started < 10
    assert "hunter2" not in str(caught.value) and "***" in str(caught.value)
