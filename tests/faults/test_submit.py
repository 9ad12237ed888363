"""Submitting under stress: a broker that is down or silent, and concurrent submitters with
one idempotency key."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from faults.fleet import ON_EACH_BROKER, QUICK, Fleet
from support import assert_settled, expq_env, free_port, run_cli

pytestmark = pytest.mark.integration

SUBMIT = ["submit", "--task", "sentiment", "--model", "rnn", "--samples", "200", "--device", "cpu"]


@ON_EACH_BROKER
def test_concurrent_submits_with_one_key_make_one_run_and_one_message(fleet: Fleet) -> None:
    command = [sys.executable, "-m", "service", *SUBMIT, "--epochs", "2"]
    command += ["--idempotency-key", "sweep-7/seed-1", "--json"]
    submitters = [
        subprocess.Popen(command, env=fleet.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(6)
    ]
    outputs = [process.communicate(timeout=120) for process in submitters]
    assert all(process.returncode == 0 for process in submitters), outputs
    (run_id,) = {json.loads(stdout)["id"] for stdout, _ in outputs}
    assert fleet.waiting() == [run_id]

    other = run_cli(fleet.env, *SUBMIT, "--epochs", "3", "--idempotency-key", "sweep-7/seed-1")
    assert other.returncode == 2
    assert "already names run" in other.stderr and "other parameters" in other.stderr
    assert fleet.waiting() == [run_id]

    fleet.worker()
    assert fleet.wait_status(run_id, "succeeded").attempt == 1
    assert_settled(fleet.engine, [run_id])


@ON_EACH_BROKER
def test_racing_threads_with_one_key_make_one_run_and_one_message(fleet: Fleet) -> None:
    """The same race, lined up on a barrier so that the inserts really collide."""
    from service.store import NewRun
    from service.submit import prepare_spec, submit_spec
    from workers.app import make_app

    spec, files = prepare_spec({**QUICK, "epochs": 2, "device": "cpu"}, None, None)
    app = make_app(fleet.broker_url)
    barrier, found, errors = threading.Barrier(8), [], []

    def submit() -> None:
        barrier.wait()
        try:
            new = NewRun("faults", "cpu", idempotency_key="race")
            found.append(submit_spec(fleet.engine, app, spec, files, new).id)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(set(found)) == 1 and len(found) == 8
    assert fleet.waiting() == found[:1]


class _Silent:
    """A TCP server that accepts connections and never answers: a hung broker."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.server.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.server.close()
        for connection in self.held:
            connection.close()


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
@pytest.mark.parametrize("broker", ["refused", "silent"])
def test_submit_with_the_broker_down_fails_fast_and_leaves_no_run(
    broker: str, scheme: str, postgresql_url: str, tmp_path: Path
) -> None:
    silent = _Silent() if broker == "silent" else None
    port = silent.port if silent else free_port()
    url = f"{scheme}://expq:hunter2@127.0.0.1:{port}/0"
    env = expq_env(tmp_path, postgresql_url, url)
    try:
        started = time.monotonic()
        result = run_cli(env, *SUBMIT, "--epochs", "2", "--json")
        elapsed = time.monotonic() - started
    finally:
        if silent:
            silent.close()
    assert result.returncode == 1 and result.stdout == ""
    assert elapsed < 10, elapsed
    assert result.stderr.startswith(f"Error: broker unreachable at {scheme}://expq:***@127.0.0.1:")
    assert len(result.stderr.strip().splitlines()) == 1 and "hunter2" not in result.stderr
    listed = run_cli(env, "runs", "list", "--format", "json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
