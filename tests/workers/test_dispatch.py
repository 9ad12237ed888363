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


def _submit(engine, app, new, **spec_fields):  # noqa: ANN001, ANN202
    from service.submit import prepare_spec, submit_spec

    spec, files = prepare_spec({"task": "binary", "model": "mlp", **spec_fields}, None, None)
    return submit_spec(engine, app, spec, files, new)


def test_an_idempotency_key_names_one_submission(sqlite_url: str, embedded_broker_url: str) -> None:
    from service.db import get_engine
    from service.errors import InputError
    from service.store import NewRun

    engine, app = get_engine(sqlite_url), make_app(embedded_broker_url)
    first = _submit(engine, app, NewRun("e", "cpu", priority=3, idempotency_key="k"))
    again = _submit(engine, app, NewRun("e", "cpu", priority=3, idempotency_key="k"))
    assert again.id == first.id
    for other in (
        NewRun("other-experiment", "cpu", priority=3, idempotency_key="k"),
        NewRun("e", "cpu", priority=5, idempotency_key="k"),
        NewRun("e", "cpu", priority=3, tags={"a": "b"}, idempotency_key="k"),
    ):
        with pytest.raises(InputError, match="already names run .* with other parameters"):
            _submit(engine, app, other)
    with pytest.raises(InputError, match="other parameters"):
        _submit(engine, app, NewRun("e", "cpu", priority=3, idempotency_key="k"), epochs=99)
    assert redis.Redis.from_url(embedded_broker_url).llen("cpu:6") == 1  # one message


def test_a_failed_publish_removes_the_run_unless_a_worker_took_it(
    sqlite_url: str, embedded_broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from support import claim

    import workers.dispatch
    from service.db import get_engine
    from service.store import NewRun, get_run, list_runs

    engine, app = get_engine(sqlite_url), make_app(embedded_broker_url)

    def down(*_args, **_kwargs) -> None:
        raise BrokerUnavailable("broker unreachable at redis://x: timeout")

    monkeypatch.setattr(workers.dispatch, "publish_run", down)
    with pytest.raises(BrokerUnavailable):
        _submit(engine, app, NewRun("e", "cpu"))
    assert list_runs(engine) == []

    def sent_but_timed_out(_app, run_id: int, *_args) -> None:
        claim(engine, run_id)  # a worker got the message before the publisher gave up
        down()

    monkeypatch.setattr(workers.dispatch, "publish_run", sent_but_timed_out)
    run = _submit(engine, app, NewRun("e", "cpu"))
    assert get_run(engine, run.id).status == "running"


def test_max_attempts_come_from_the_environment(
    sqlite_url: str, embedded_broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.db import get_engine
    from service.store import NewRun

    monkeypatch.setenv("EXPQ_MAX_ATTEMPTS", "5")
    run = _submit(get_engine(sqlite_url), make_app(embedded_broker_url), NewRun("e", "cpu"))
    assert run.max_attempts == 5
