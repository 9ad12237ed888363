"""The task's message checks and how a dead pool process is described."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from billiard.exceptions import WorkerLostError

from workers.runner import lease_owner
from workers.tasks import (
    MAX_RETRIES,
    RETRY_MAX_SECONDS,
    death_reason,
    retry_countdown,
    train_run,
    valid_run_id,
)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([7], 7),
        ([0], None),
        ([-1], None),
        (["7"], None),
        ([True], None),
        ([1, 2], None),
        ([], None),
    ],
)
def test_only_a_positive_integer_run_id_is_accepted(args: list, expected: int | None) -> None:
    assert valid_run_id(args) == expected


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            "Worker exited prematurely: signal 9 (SIGKILL) Job: 3.",
            "the training process died: signal 9 (SIGKILL) (killed: out of memory?)",
        ),
        (
            "Worker exited prematurely: signal 11 (SIGSEGV) Job: 0.",
            "the training process died: signal 11 (SIGSEGV)",
        ),
        ("Worker exited prematurely: exitcode 70.", "the training process died: exitcode 70"),
        (
            "Worker exited prematurely: exitcode 75 Job: 2.",
            "training made no progress for 300 s; its process was ended",
        ),
    ],
)
def test_a_dead_pool_process_is_described_for_the_run(message: str, reason: str) -> None:
    assert death_reason(WorkerLostError(message)) == reason


def test_the_main_process_can_rebuild_a_pool_process_lease_owner() -> None:
    assert lease_owner("host-1", 4242, "task-id") == "host-1:4242:task-id"
    assert lease_owner("host-1", 4242) != lease_owner("host-1", 4242)  # unique without a task


def test_a_database_that_never_answers_is_retried_for_a_bounded_time() -> None:
    waits = [retry_countdown(retries) for retries in range(MAX_RETRIES + 1)]
    assert waits[:6] == [1, 2, 4, 8, 16, 30] and max(waits[:-1]) == RETRY_MAX_SECONDS
    assert waits[-1] is None
    assert 5 * 60 < sum(waits[:-1]) < 15 * 60


def test_a_message_the_database_never_takes_is_dropped_with_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Run eagerly, each retry follows at once: every one of them, then the drop."""
    monkeypatch.setenv("EXPQ_HOME", str(tmp_path))
    monkeypatch.setenv("EXPQ_DATABASE_URL", "postgresql+psycopg://expq@127.0.0.1:1/expq")
    with caplog.at_level(logging.WARNING, logger="workers.tasks"):
        dropped = train_run.apply(args=[7])
    assert dropped.state == "SUCCESS" and dropped.result is None
    retried = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retried) == MAX_RETRIES
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.getMessage().startswith("run 7: database unavailable (database unreachable at")
    assert f"through {MAX_RETRIES} retries; message dropped" in error.getMessage()
