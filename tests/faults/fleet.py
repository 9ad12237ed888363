"""The fault suite's fleet: real `expq worker` processes on real Redis and PostgreSQL, with
short leases, so that every recovery path runs in seconds."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import poll, queue_runs, run_row

INJECT = str(Path(__file__).parent / "inject")
# A short fleet: a lost attempt is recovered within LEASE + REAP seconds. Ten heartbeats a
# lease: a loaded CI machine whose database stalls for a second must not lose live leases.
FAULT_ENV = {
    "EXPQ_HEARTBEAT_SECONDS": "0.5",
    "EXPQ_LEASE_SECONDS": "5",
    "EXPQ_REAP_SECONDS": "0.5",
}
# A fault whose recovery must not depend on the database the fleet shares.
ON_EACH_DATABASE = pytest.mark.parametrize("fleet", ["sqlite", "postgresql"], indirect=True)
# A fault the broker sees, on Redis and on RabbitMQ.
ON_EACH_BROKER = pytest.mark.parametrize("fleet_broker", ["redis", "rabbitmq"])
# About 20 ms an epoch on one CPU core; T = 1, so an epoch writes 2 x (1 + 1) loss rows.
QUICK = {"task": "sentiment", "model": "rnn", "samples": 200, "hidden": 16}


@dataclass
class Fleet:
    database_url: str
    broker_url: str
    env: dict[str, str]
    start_worker: Callable[..., subprocess.Popen]
    engine: Any = field(init=False)

    def __post_init__(self) -> None:
        from service.db import get_engine

        self.engine = get_engine(self.database_url)

    def worker(
        self, concurrency: int = 1, inject: str | None = None, **env: str
    ) -> subprocess.Popen:
        """A worker at INFO, so that tests can wait for what it logs; `inject` names a fault
        for its training processes (tests/faults/inject/sitecustomize.py)."""
        if inject is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [INJECT, os.environ.get("PYTHONPATH")])
            )
            env["EXPQ_TEST_INJECT"] = inject
            env["EXPQ_TEST_INJECT_MARKER"] = self.marker(inject)
        return self.start_worker({**self.env, **env}, concurrency, loglevel="INFO")

    def marker(self, inject: str) -> str:
        """The file an injected fault creates when it strikes."""
        Path(self.env["EXPQ_HOME"]).mkdir(parents=True, exist_ok=True)
        return f"{self.env['EXPQ_HOME']}/injected-{inject.partition('@')[0]}"

    def submit(self, *specs: dict, **new: Any) -> list[int]:
        return queue_runs(self.database_url, self.broker_url, *specs, **new)

    def waiting(self, queue: str = "cpu") -> list[int]:
        return waiting_run_ids(self.broker_url, queue)

    def run(self, run_id: int):  # noqa: ANN201
        return run_row(self.engine, run_id)

    def wait_status(self, run_id: int, *statuses: str, timeout: float = 60) -> Any:
        return poll(
            lambda: (run := self.run(run_id)).status in statuses and run,
            timeout,
            f"run {run_id} to be {' or '.join(statuses)}",
        )

    def wait_attempt(self, run_id: int, attempt: int) -> Any:
        """Until the run has been claimed `attempt` times, whatever it does next."""
        return poll(
            lambda: (run := self.run(run_id)).attempt >= attempt and run,
            60,
            f"run {run_id} to be claimed {attempt} times",
        )

    def wait_training(self, run_id: int, epochs: int = 1, attempt: int = 1) -> Any:
        """Until attempt `attempt` of the run has recorded `epochs` epochs."""
        return poll(
            lambda: (
                (run := self.run(run_id)).status == "running"
                and run.attempt == attempt
                and run.epochs_done >= epochs
                and run
            ),
            60,
            f"run {run_id} attempt {attempt} to train {epochs} epochs",
        )


def training_pid(run) -> int:  # noqa: ANN001 - a runs row
    """The pool process that holds a run: its lease owner is host:pid:message."""
    return int(run.lease_owner.rsplit(":", 2)[1])


def worker_holding(run, workers: list[subprocess.Popen]) -> subprocess.Popen:  # noqa: ANN001
    group = os.getpgid(training_pid(run))
    return next(worker for worker in workers if worker.pid == group)


def freeze(worker: subprocess.Popen) -> None:
    os.killpg(worker.pid, signal.SIGSTOP)


def thaw(worker: subprocess.Popen) -> None:
    os.killpg(worker.pid, signal.SIGCONT)


def _row_locked(engine, run_id: int) -> bool:  # noqa: ANN001
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError

    from service.schema import Run

    with engine.connect() as connection:
        try:
            connection.execute(
                select(Run.run_id).where(Run.run_id == run_id).with_for_update(nowait=True)
            )
        except OperationalError:  # LockNotAvailable: a transaction holds the row
            return True
        finally:
            connection.rollback()
    return False


def freeze_inside_a_write(engine, pid: int, run_id: int) -> None:  # noqa: ANN001
    """SIGSTOP training process `pid` while it holds its run's row lock (PostgreSQL): frozen
    between an epoch's UPDATE and its COMMIT, as a VM pause or a swap storm may catch it."""

    def frozen_inside() -> bool:
        poll(lambda: _row_locked(engine, run_id), 30, f"a write of run {run_id}", interval=0)
        os.kill(pid, signal.SIGSTOP)
        if _row_locked(engine, run_id):
            return True
        os.kill(pid, signal.SIGCONT)  # it committed before the signal landed: again
        return False

    poll(frozen_inside, 60, f"process {pid} frozen inside a write of run {run_id}", interval=0)


def waiting_run_ids(broker_url: str, queue: str = "cpu") -> list[int]:
    """The run id of every train message waiting in the broker's queue, all levels, in no
    particular order. RabbitMQ shows a message only by delivering it: each is taken unacked
    and goes back when the channel closes."""
    import base64
    import json

    if broker_url.startswith("amqp"):
        from kombu import Connection

        with Connection(broker_url) as connection:
            channel = connection.channel()
            ids = []
            while (message := channel.basic_get(queue, no_ack=False)) is not None:
                ids.append(json.loads(message.body)[0][0])
            channel.close()
        return ids
    import redis

    client = redis.Redis.from_url(broker_url)
    ids = []
    for key in client.keys(f"{queue}*"):
        if client.type(key) == b"list":
            for raw in client.lrange(key, 0, -1):
                ids.append(json.loads(base64.b64decode(json.loads(raw)["body"]))[0][0])
    return ids
