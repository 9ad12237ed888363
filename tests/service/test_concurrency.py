"""The store under concurrency: parallel SQLite writers, racing migrations, a PostgreSQL pool
whose connections die under it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from support import new_run

from service.db import current_revision, get_engine, head_revision, make_engine
from service.schema import Loss
from service.store import list_runs

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import sys, time
sys.path.insert(0, "tests")
from support import Split, claim, new_run
from service.db import get_engine
from service.lifecycle import finish_run, record_epoch
from service.store import get_losses, list_runs

engine = get_engine(sys.argv[1])
while time.time() < float(sys.argv[2]):
    time.sleep(0.005)
run = new_run(engine, experiment="race")
attempt = claim(engine, run.id)
for epoch in range(1, int(sys.argv[3]) + 1):
    record_epoch(engine, run.id, attempt, epoch,
                 {"train": Split(1.0, [0.5, 0.5]), "val": Split(2.0, [1.0, 1.0])})
    list_runs(engine, where="val_loss_t[2] < 5", limit=5)  # readers run beside the writers
    get_losses(engine, run.id, epoch="last")
finish_run(engine, run.id, attempt, "succeeded")
"""


def _start(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_four_sqlite_writers_never_see_database_is_locked(sqlite_url: str) -> None:
    get_engine(sqlite_url)  # created at head once, before the race
    epochs = 40
    start_at = str(time.time() + 2.0)
    writers = [_start(WRITER, sqlite_url, start_at, str(epochs)) for _ in range(4)]
    for writer in writers:
        _, stderr = writer.communicate(timeout=120)
        assert "database is locked" not in stderr
        assert writer.returncode == 0, stderr
    engine = get_engine(sqlite_url)
    runs = list_runs(engine, experiment="race", limit=None)
    assert len(runs) == 4 and {r.status for r in runs} == {"succeeded"}
    assert {r.epochs_done for r in runs} == {epochs}
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(Loss)).scalar_one()
    assert count == 4 * epochs * 2 * 3


UPGRADER = """
import sys, time
from service.db import make_engine, upgrade
engine = make_engine(sys.argv[1])
while time.time() < float(sys.argv[2]):
    time.sleep(0.002)
upgrade(engine)
"""


def test_two_processes_upgrading_at_once_apply_one_revision(database_url: str) -> None:
    start_at = str(time.time() + 2.0)
    upgraders = [_start(UPGRADER, database_url, start_at) for _ in range(2)]
    for upgrader in upgraders:
        _, stderr = upgrader.communicate(timeout=120)
        assert upgrader.returncode == 0, stderr
    engine = make_engine(database_url)
    with engine.connect() as connection:
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    assert [row[0] for row in versions] == [head_revision()]
    assert current_revision(engine) == head_revision()


def test_the_postgresql_pool_survives_its_connections_being_killed(postgresql_url: str) -> None:
    """pg_terminate_backend is what a server restart does to a pool: pre-ping reconnects."""
    name = f"expq-prepping-{uuid.uuid4().hex[:8]}"
    url = make_url(postgresql_url).update_query_dict({"application_name": name})
    engine = get_engine(url.render_as_string(hide_password=False))
    assert list_runs(engine) == []
    admin = create_engine(postgresql_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        killed = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :name"
            ),
            {"name": name},
        ).scalar_one()
    admin.dispose()
    assert killed >= 1
    assert list_runs(engine) == []  # the dead pooled connection is replaced, not surfaced


def test_sqlite_readers_do_not_wait_for_a_writer(sqlite_url: str) -> None:
    """A transaction that only reads begins deferred: in WAL mode it runs beside a writer
    that holds the write lock, instead of queueing behind it for the busy timeout."""
    from service.db import session_scope

    engine = get_engine(sqlite_url)
    new_run(engine)
    writer = create_engine(sqlite_url)
    with writer.connect() as holder:
        holder.exec_driver_sql("BEGIN IMMEDIATE")
        holder.exec_driver_sql("UPDATE runs SET priority = 5")
        started = time.monotonic()
        with session_scope(engine, read_only=True) as session:
            assert session.execute(text("SELECT max(priority) FROM runs")).scalar_one() == 0
        assert len(list_runs(engine)) == 1
        assert time.monotonic() - started < 1.0
        holder.exec_driver_sql("ROLLBACK")
    writer.dispose()
