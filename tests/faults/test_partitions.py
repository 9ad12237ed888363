"""A real `expq worker` in its own network namespace, cut off silently (nftables drops, nothing
refused): its calls fail within their bounds instead of hanging, and it is back to useful work
within RECOVERY_AFTER_HEAL_SECONDS of the heal (README "Recovery")."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import partition_support
import pytest
from partition_support import Child
from support import assert_settled, log_has, poll, queue_runs, run_row

from benchmarks.chaos.network import Cut, Namespace
from benchmarks.chaos.services import Redis
from service.db import CONNECT_TIMEOUT_SECONDS, NETWORK_TIMEOUT_SECONDS

pytestmark = pytest.mark.integration
network = partition_support.network
namespace = partition_support.namespace
bridged_postgres = partition_support.bridged_postgres

CUT_SECONDS = 15.0  # longer than the lease (5 s) and the network timeout
# The bound this test holds: from the heal to the next epoch, claim or end of the cut worker's
# run, or to a new run's claim.
RECOVERY_AFTER_HEAL_SECONDS = 10.0
SLACK_SECONDS = 4.0  # a loaded 2-core machine's lateness
# A publish (the reaper's, a submit's) on an open connection into a silent partition fails
# after the broker socket timeout (workers/app.py): publish_run does not retry.
PUBLISH_BOUND_SECONDS = 5.0
_PUBLISH = """
import sys, time
from workers.app import make_app
from workers.dispatch import publish_run
app = make_app(sys.argv[1])
publish_run(app, 999999, "gpu")
print("ready", flush=True)
sys.stdin.readline()
started = time.monotonic()
try:
    publish_run(app, 999998, "gpu")
    print(f"answered {time.monotonic() - started:.2f}", flush=True)
except Exception as exc:
    print(f"failed {time.monotonic() - started:.2f} {type(exc).__name__}", flush=True)
"""
LONG_RUN = {"task": "sentiment", "model": "rnn", "samples": 1000, "hidden": 16, "epochs": 40}
QUICK_RUN = {"task": "binary", "model": "mlp", "samples": 200, "epochs": 2}


@pytest.fixture(scope="module")
def bridged_redis(network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:  # noqa: ANN001
    server = Redis(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cut_worker(
    namespace: Namespace,
    bridged_postgres,
    bridged_redis: Redis,
    tmp_path: Path,  # noqa: ANN001
) -> Iterator[tuple[subprocess.Popen, Path]]:
    """One worker inside the namespace, reaching the services over the bridge."""
    import redis

    from service.db import get_engine

    with redis.Redis(port=bridged_redis.port) as client:
        client.flushall()  # the module's earlier tests leave no message behind
    get_engine(bridged_postgres.url())  # the schema, before the worker looks for it
    host = namespace.host_address
    env = {
        **os.environ,
        "EXPQ_HOME": str(tmp_path / "home"),
        "EXPQ_DATABASE_URL": bridged_postgres.url(host),
        "EXPQ_BROKER_URL": bridged_redis.url(host),
        "EXPQ_HEARTBEAT_SECONDS": "0.5",
        "EXPQ_LEASE_SECONDS": "5",
        "EXPQ_REAP_SECONDS": "0.5",
        "OMP_NUM_THREADS": "1",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("ab") as log:
        worker = subprocess.Popen(
            [*namespace.exec_prefix(), sys.executable, "-m", "service", "worker",
             "--queues", "cpu,auto", "--concurrency=1", "--loglevel=INFO"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=partition_support.REPOSITORY,
        )  # fmt: skip
    poll(lambda: log_has(log_path, " ready."), 120, "the worker to start")
    try:
        yield worker, log_path
    finally:
        from service.demo import stop_worker

        stop_worker(worker, 10)


def _progress(engine, run_id: int, since) -> bool:  # noqa: ANN001
    run = run_row(engine, run_id)
    return (
        run.status in ("succeeded", "failed", "cancelled")
        or run.attempt != since.attempt
        or run.epochs_done > since.epochs_done
    )


def test_a_worker_isolated_mid_run_fails_its_calls_and_trains_again_after_the_heal(
    namespace: Namespace,
    bridged_postgres,
    bridged_redis: Redis,
    cut_worker,  # noqa: ANN001
) -> None:
    from service.db import get_engine

    worker, log_path = cut_worker
    engine = get_engine(bridged_postgres.url())
    [run_id] = queue_runs(bridged_postgres.url(), bridged_redis.url(), LONG_RUN)
    poll(lambda: run_row(engine, run_id).epochs_done >= 1, 120, f"run {run_id} to train")
    namespace.apply([Cut("isolate")])
    cut_at = time.monotonic()
    # The first renewal may fail only past the lease (5 s): then the worker also stops training.
    failed = ("lease renewal failed", "lease renewals failed")
    poll(lambda: any(log_has(log_path, line) for line in failed), 60, "a renewal to fail")
    failed_after = time.monotonic() - cut_at
    time.sleep(max(0.0, cut_at + CUT_SECONDS - time.monotonic()))  # the cut's length, no sync
    at_heal = run_row(engine, run_id)
    namespace.apply([])
    healed = time.monotonic()
    poll(lambda: _progress(engine, run_id, at_heal), 120, f"run {run_id} to move again")
    back_after = time.monotonic() - healed
    print(f"renewal failed {failed_after:.1f} s into the cut; back {back_after:.1f} s after")
    # Through the pool: the pre-ping on the dead connection waits out the network timeout,
    # then the pool's reconnect its connect timeout; plus one heartbeat interval.
    assert failed_after <= NETWORK_TIMEOUT_SECONDS + CONNECT_TIMEOUT_SECONDS + 0.5 + SLACK_SECONDS
    assert back_after <= RECOVERY_AFTER_HEAL_SECONDS + SLACK_SECONDS
    poll(lambda: run_row(engine, run_id).status == "succeeded", 300, f"run {run_id} to succeed")
    assert_settled(engine, [run_id])


def test_a_worker_cut_off_from_the_broker_takes_new_runs_soon_after_the_heal(
    namespace: Namespace,
    bridged_postgres,
    bridged_redis: Redis,
    cut_worker,  # noqa: ANN001
) -> None:
    from service.db import get_engine

    engine = get_engine(bridged_postgres.url())
    namespace.apply([Cut("partition", (bridged_redis.port,))])
    time.sleep(CUT_SECONDS)  # the cut's length, no sync
    namespace.apply([])
    healed = time.monotonic()
    [run_id] = queue_runs(bridged_postgres.url(), bridged_redis.url(), QUICK_RUN)
    poll(lambda: run_row(engine, run_id).attempt >= 1, 120, f"run {run_id} to be claimed")
    back_after = time.monotonic() - healed
    print(f"claimed {back_after:.1f} s after the heal")
    assert back_after <= RECOVERY_AFTER_HEAL_SECONDS + SLACK_SECONDS
    poll(lambda: run_row(engine, run_id).status == "succeeded", 120, f"run {run_id} to succeed")
    assert_settled(engine, [run_id])


def test_a_publish_into_a_broker_partition_fails_within_its_bound(
    namespace: Namespace, bridged_redis: Redis
) -> None:
    child = Child(namespace, _PUBLISH, bridged_redis.url(namespace.host_address))
    try:
        assert child.line(60) == "ready"
        namespace.apply([Cut("partition", (bridged_redis.port,))])
        child.say()
        line = child.line(PUBLISH_BOUND_SECONDS + 60)
    finally:
        child.stop()
    assert line is not None, "the publish still hangs a minute into the cut"
    verdict, seconds, *_ = line.split()
    print(f"publish {verdict} after {seconds} s")
    assert verdict == "failed"
    assert float(seconds) <= PUBLISH_BOUND_SECONDS + SLACK_SECONDS
