"""Helpers shared by the tests: polling with a deadline, expq processes as users run them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.chaos.services import Rabbit, pump


def poll(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Call `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def assert_nothing_written(tmp_path: Path, broker_url: str) -> None:
    """A refused command left no database file (expq.db in `tmp_path`) and no broker key."""
    import redis

    assert not (tmp_path / "expq.db").exists()
    assert redis.Redis.from_url(broker_url).dbsize() == 0


def expq_env(tmp_path: Path, database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    """The environment of an expq process in a test: its own home, short leases."""
    return {
        **os.environ,
        "EXPQ_HOME": str(tmp_path / "home"),
        "EXPQ_DATABASE_URL": database_url,
        "EXPQ_BROKER_URL": broker_url,
        "EXPQ_HEARTBEAT_SECONDS": "0.5",
        "EXPQ_LEASE_SECONDS": "5",
        "EXPQ_REAP_SECONDS": "1",
        "OMP_NUM_THREADS": "1",
        # One run a training process, as these tests assume; fused groups are tested by name.
        "EXPQ_FUSE": "1",
        **extra,
    }


def run_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`expq ARGS...` as a user runs it: a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Split:
    """One split's numbers for an epoch, shaped like models.training.SplitReport."""

    total: float
    per_timestep: list[float] = field(default_factory=list)
    metric: float = 0.5
    metrics: dict[str, float] = field(default_factory=dict)
    per_timestep_metrics: dict[str, list[float]] = field(default_factory=dict)


def new_run(  # noqa: ANN201
    engine,  # noqa: ANN001
    task: str = "translation",
    experiment: str = "exp",
    max_attempts: int = 3,
    **spec_fields,
):
    """A queued run of `task` with the RNN, tagged team=a."""
    from models.spec import spec_from_dict
    from service.store import NewRun, create_run

    spec = spec_from_dict({"task": task, "model": "rnn", **spec_fields})
    new = NewRun(experiment=experiment, queue="cpu", tags={"team": "a"}, max_attempts=max_attempts)
    return create_run(engine, spec.to_dict(), spec.params(), new)


def old_run(  # noqa: ANN201
    engine,  # noqa: ANN001
    spec_fields: dict,
    params: dict | None = None,
    experiment: str = "exp",
    claimed: bool = False,
):
    """A run written with only the columns every revision has, as a database from before the
    later ones holds it (create_run and the claim write today's): for migration tests.
    `params`: the rows to record, by name; `claimed`: running as attempt 1, else queued."""
    from sqlalchemy import insert, select

    from models.spec import spec_from_dict
    from service.db import session_scope
    from service.records import utcnow
    from service.schema import Experiment, Run, RunParam

    spec = spec_from_dict(spec_fields)
    now = utcnow()
    with session_scope(engine) as session:
        named = select(Experiment.experiment_id).where(Experiment.name == experiment)
        if (experiment_id := session.scalar(named)) is None:
            session.execute(insert(Experiment).values(name=experiment, created_at=now))
            experiment_id = session.scalar(named)
        run_id = session.execute(
            insert(Run.__table__)
            .values(
                experiment_id=experiment_id, task=spec.task, model=spec.model,
                status="running" if claimed else "queued", attempt=int(claimed),
                spec=spec.to_dict(), queue="cpu", created_at=now, queued_at=now,
            )  # fmt: skip
            .returning(Run.__table__.c.run_id)
        ).scalar_one()
        for name, value in (params or {}).items():
            text = isinstance(value, str)
            session.execute(
                insert(RunParam).values(
                    run_id=run_id, name=name, num_value=None if text else float(value),
                    text_value=value if text else None,
                )  # fmt: skip
            )
    return run_id


def claim(engine, run_id: int, lease: float = 30.0) -> int:  # noqa: ANN001
    """Claim `run_id` as worker "host"; the attempt number."""
    from service.lifecycle import claim_run

    attempt = claim_run(
        engine, run_id, owner="w1", worker="host", device="cpu", lease_seconds=lease
    )
    assert attempt is not None
    return attempt


# -- fault and fleet tests ------------------------------------------------------------------

TERMINAL = ("succeeded", "failed", "diverged", "cancelled", "pruned")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def log_has(path: Path, text: str, times: int = 1) -> bool:
    return read_log(path).count(text) >= times


class PrivateRedis:
    """A redis-server of the test's own, on a free port, in a folder of its own; stopped by
    its pid. `restart()` keeps the port and the folder (and so an append-only file)."""

    def __init__(
        self,
        folder: Path,
        *,
        appendonly: bool = False,
        password: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.appendonly = appendonly
        self.password = password
        self.tls = tls  # (certificate, key), self-signed: the certificate is its own CA
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls[0]}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self):  # noqa: ANN201 - redis.Redis
        import redis

        if self.tls:
            return redis.Redis(
                "127.0.0.1",
                self.port,
                password=self.password,
                ssl=True,
                ssl_ca_certs=str(self.tls[0]),
            )
        return redis.Redis("127.0.0.1", self.port, password=self.password)

    def start(self) -> PrivateRedis:
        args = ["redis-server", "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", ""]
        args += ["--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always"]
        args += ["--logfile", str(self.folder / "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls:
            cert, key = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert)]
            args += ["--tls-key-file", str(key), "--tls-ca-cert-file", str(cert)]
            args += ["--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        self.process = subprocess.Popen(args, start_new_session=True)
        try:
            poll(self._answers, 20, f"redis-server on port {self.port}")
        except AssertionError:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def stop(self) -> None:
        """SIGTERM: Redis shuts down cleanly, flushing its append-only file when it has one."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class TcpProxy:
    """A TCP forwarder on a fixed local port: closed, connections are refused (the service
    behind it looks down); open, it forwards every connection to the target."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server = None

    def open(self) -> None:
        import socket
        import threading

        server = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def close(self) -> None:
        import socket

        if self._server is not None:
            try:  # wakes the accept() blocked in the other thread: close() alone does not
                self._server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._server.close()
            self._server = None

    def _accept(self, server) -> None:  # noqa: ANN001 - a listening socket
        import socket
        import threading

        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()


def queue_runs(database_url: str, broker_url: str, *specs: dict, **new: Any) -> list[int]:
    """Submit runs in this process, as `expq submit` does (validate, insert, publish). A spec
    may name a stored data digest that is not there: the worker's checks are under test."""
    from service.db import get_engine
    from service.store import NewRun
    from service.submit import submit_spec, validate_spec
    from workers.app import make_app
    from workers.dispatch import queue_for_device

    engine, app = get_engine(database_url), make_app(broker_url)
    ids = []
    for raw in specs:
        spec = validate_spec({"device": "cpu", **raw})
        fields = {"experiment": "faults", **new}
        ids.append(
            submit_spec(
                engine, app, spec, {}, NewRun(queue=queue_for_device(spec.device), **fields)
            ).id
        )
    return ids


def run_row(engine, run_id: int):  # noqa: ANN001, ANN201 - the runs row, lease columns included
    from sqlalchemy import select

    from service.db import session_scope
    from service.schema import Run

    with session_scope(engine) as session:
        return session.execute(select(Run).where(Run.run_id == run_id)).scalar_one()


def loss_rows(engine, run_id: int, attempt: int | None = None) -> list[tuple]:  # noqa: ANN001
    """(attempt, epoch, split, timestep) of every stored loss row of a run, or of one attempt."""
    from sqlalchemy import select

    from service.db import session_scope
    from service.schema import Loss

    query = select(Loss.attempt, Loss.epoch, Loss.split, Loss.timestep).where(Loss.run_id == run_id)
    if attempt is not None:
        query = query.where(Loss.attempt == attempt)
    with session_scope(engine) as session:
        return [tuple(row) for row in session.execute(query)]


def assert_settled(engine, run_ids: list[int]) -> dict[int, Any]:  # noqa: ANN001
    """The invariants every fault test ends with, for each run: one terminal status and no
    lease; attempts lost within the maximum; the winning attempt's loss rows exactly
    epochs_done x (timesteps + 1) x splits (T_split timesteps and one total per epoch and
    split, the same T every epoch), and queries showing exactly those rows."""
    from service.store import get_losses

    settled = {}
    for run_id in run_ids:
        run = run_row(engine, run_id)
        assert run.status in TERMINAL, (run_id, run.status)
        assert run.finished_at is not None and run.lease_owner is None, run_id
        assert run.lease_expires_at is None, run_id
        lost = run.attempt - run.given_back  # attempts given back do not count
        assert 0 <= lost <= run.max_attempts, (run_id, run.attempt, run.given_back)
        rows = loss_rows(engine, run_id, run.attempt)
        by_split: dict[str, dict[int, set]] = {}
        for _, epoch, split, timestep in rows:
            by_split.setdefault(split, {}).setdefault(epoch, set()).add(timestep)
        expected = 0
        for split in by_split:
            epochs = by_split[split]
            assert sorted(epochs) == list(range(1, run.epochs_done + 1)), (run_id, split)
            steps = {len(found) - 1 for found in epochs.values()}
            assert len(steps) == 1, (run_id, split, steps)
            (t,) = steps
            for found in epochs.values():
                assert found == {None, *range(1, t + 1)}, (run_id, split, found)
            expected += run.epochs_done * (t + 1)
        if run.epochs_done:
            assert sorted(by_split) == ["train", "val"], (run_id, sorted(by_split))
        assert len(rows) == expected, (run_id, len(rows), expected)
        assert len(get_losses(engine, run_id)) == len(rows), run_id
        if run.status == "succeeded":
            assert run.epochs_done == run.spec["epochs"], (run_id, run.epochs_done)
        settled[run_id] = run
    return settled


# The run columns that say where its best epoch was and what it scored, and its last epoch's.
BEST_SUMMARY = (
    "best_epoch", "best_metric", "best_metrics", "final_metric", "final_metrics", "best_val_loss",
)  # fmt: skip


def run_columns(engine, run_id: int, *names: str) -> tuple:  # noqa: ANN001
    """The named columns of the runs row, in order."""
    from sqlalchemy import select

    from service.db import session_scope
    from service.schema import Run

    with session_scope(engine) as session:
        query = select(*(getattr(Run, name) for name in names)).where(Run.run_id == run_id)
        return tuple(session.execute(query).one())


class PrivateRabbit(Rabbit):
    """A RabbitMQ node of the test's own on loopback, its `url` read as the other private
    brokers' is."""

    @property
    def url(self) -> str:  # type: ignore[override]
        return Rabbit.url(self)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)
