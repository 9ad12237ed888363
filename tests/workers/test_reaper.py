"""The reconciler's decisions, on the embedded broker and SQLite: what it queues again and what
it publishes again, and what it leaves alone."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from kombu import Connection, Consumer, Queue
from sqlalchemy import update
from support import claim, new_run, poll

from service.config import Settings
from service.db import get_engine, session_scope
from service.lifecycle import release_lease
from service.records import utcnow
from service.schema import Run
from service.store import get_run
from workers.app import make_app
from workers.dispatch import broker_backlog, held_run_ids, publish_run
from workers.reaper import Reaper, reconcile_once


@pytest.fixture
def setup(tmp_path: Path, sqlite_url: str, embedded_broker_url: str):  # noqa: ANN201
    settings = Settings(
        home=tmp_path,
        database_url=sqlite_url,
        broker_url=embedded_broker_url,
        reap_seconds=0.05,
        resend_after_seconds=60,
    )
    return settings, get_engine(sqlite_url), make_app(embedded_broker_url)


def _age(engine, run_id: int) -> None:  # noqa: ANN001
    with session_scope(engine) as session:
        session.execute(
            update(Run)
            .where(Run.run_id == run_id)
            .values(queued_at=utcnow() - timedelta(seconds=120))
        )


def test_a_released_lease_is_queued_again_and_published(setup) -> None:  # noqa: ANN001
    settings, engine, app = setup
    run = new_run(engine)
    claim(engine, run.id)
    release_lease(engine, run.id, "w1", "the training process died: signal 9 (SIGKILL)")
    assert [d.run_id for d in reconcile_once(app, settings)] == [run.id]
    assert get_run(engine, run.id).status == "queued"
    assert broker_backlog(app, "cpu") == (1, [])
    assert reconcile_once(app, settings) == []  # its message is there: nothing more to do


def test_only_a_lost_message_is_published_again(setup) -> None:  # noqa: ANN001
    """Redis: the reaper reads which runs have a message, at every priority level."""
    settings, engine, app = setup
    waiting = [new_run(engine) for _ in range(3)]
    for priority, run in enumerate(waiting):
        publish_run(app, run.id, "cpu", priority * 4)
        _age(engine, run.id)
    assert held_run_ids(app, "cpu", 60) == {run.id for run in waiting}
    assert reconcile_once(app, settings) == []  # a backlog older than resend_after, all there

    lost = new_run(engine)  # inserted, then the submitter died before publishing
    _age(engine, lost.id)
    assert [d.run_id for d in reconcile_once(app, settings)] == [lost.id]
    assert broker_backlog(app, "cpu")[0] == 3 + 1
    assert held_run_ids(app, "cpu", 60) == {run.id for run in [*waiting, lost]}
    assert reconcile_once(app, settings) == []


def test_on_rabbitmq_a_shortfall_publishes_every_stale_run(
    tmp_path: Path, sqlite_url: str, rabbitmq_url: str
) -> None:
    """RabbitMQ cannot show a message without delivering it: the count of waiting messages
    falls short of the queued runs, so each stale run is published again, the lost one among
    them (the claim drops the duplicates), and once a period only."""
    settings = Settings(home=tmp_path, database_url=sqlite_url, broker_url=rabbitmq_url)
    engine, app = get_engine(sqlite_url), make_app(rabbitmq_url)
    waiting = [new_run(engine) for _ in range(3)]
    for run in waiting:
        publish_run(app, run.id, "cpu")
        _age(engine, run.id)
    assert held_run_ids(app, "cpu", 60) is None
    # A publish is not confirmed: the count follows it within moments.
    poll(lambda: broker_backlog(app, "cpu")[0] == 3, 10, "3 messages")
    assert reconcile_once(app, settings) == []
    lost = new_run(engine)
    _age(engine, lost.id)
    resent = reconcile_once(app, settings)
    assert sorted(d.run_id for d in resent) == sorted(r.id for r in [*waiting, lost])
    poll(lambda: broker_backlog(app, "cpu")[0] == 3 + 4, 10, "7 messages")
    assert reconcile_once(app, settings) == []


def test_a_message_delivered_but_not_yet_acked_still_counts(setup) -> None:  # noqa: ANN001
    settings, engine, app = setup
    run = new_run(engine)
    publish_run(app, run.id, "cpu")
    _age(engine, run.id)
    options = app.conf.broker_transport_options
    with Connection(settings.broker_url, transport_options=options) as connection:
        held = []
        with Consumer(connection, [Queue("cpu")], callbacks=[lambda b, m: held.append(m)]):
            connection.drain_events(timeout=5)  # taken by a "worker", not acked
        assert broker_backlog(app, "cpu") == (0, [run.id])
        assert held_run_ids(app, "cpu", 60) == {run.id}
        assert reconcile_once(app, settings) == []


def test_a_message_left_unacked_by_a_lost_consumer_is_published_again(setup) -> None:  # noqa: ANN001
    """A worker acks as it starts a run and takes no message it cannot start: one delivered
    long ago and never acked belongs to a consumer killed or cut off by a broker restart, and
    would come back only after the visibility timeout."""
    settings, engine, app = setup
    run = new_run(engine)
    publish_run(app, run.id, "cpu")
    _age(engine, run.id)
    options = app.conf.broker_transport_options
    with Connection(settings.broker_url, transport_options=options) as connection:
        with Consumer(connection, [Queue("cpu")], callbacks=[lambda _body, _message: None]):
            connection.drain_events(timeout=5)
        channel = connection.default_channel
        (tag,) = channel.client.zrange(channel.unacked_index_key, 0, -1)
        channel.client.zadd(channel.unacked_index_key, {tag: time.time() - 61})
        assert broker_backlog(app, "cpu") == (0, [run.id])
        assert held_run_ids(app, "cpu", 60) == set()
        assert [d.run_id for d in reconcile_once(app, settings)] == [run.id]
        assert held_run_ids(app, "cpu", 60) == {run.id}


@pytest.mark.parametrize("reap_seconds", [0.05, 3600], ids=["on-its-timer", "when-woken"])
def test_the_reaper_thread_passes(setup, monkeypatch: pytest.MonkeyPatch, reap_seconds) -> None:  # noqa: ANN001
    import workers.reaper as module

    settings, _engine, app = setup
    passes = threading.Semaphore(0)
    monkeypatch.setattr(module, "reconcile_once", lambda *_args: passes.release())
    reaper = Reaper(app, Settings(**{**settings.__dict__, "reap_seconds": reap_seconds}))
    reaper.start()
    try:
        if reap_seconds > 60:
            reaper.wake()
        assert passes.acquire(timeout=10)
    finally:
        reaper.stop()
    poll(lambda: not reaper.is_alive(), 10, "the reaper to stop")


def test_a_broker_that_cannot_count_gets_no_resends(setup, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Redis answers LOADING while it reads its append-only file back: no count, no guess."""
    import redis as redis_client

    import workers.reaper as module

    settings, engine, app = setup
    run = new_run(engine)  # its message may well be in the broker still
    _age(engine, run.id)

    def loading(*_args):  # noqa: ANN202
        raise redis_client.BusyLoadingError("Redis is loading the dataset in memory")

    monkeypatch.setattr(module, "held_run_ids", loading)
    assert reconcile_once(app, settings) == []
    monkeypatch.undo()
    assert [d.run_id for d in reconcile_once(app, settings)] == [run.id]  # it was lost after all
