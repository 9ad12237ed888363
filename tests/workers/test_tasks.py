"""The task's message checks and how a dead pool process is described."""

from __future__ import annotations

import pytest
from billiard.exceptions import WorkerLostError

from workers.runner import lease_owner
from workers.tasks import death_reason, valid_run_id


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
    ],
)
def test_a_dead_pool_process_is_described_for_the_run(message: str, reason: str) -> None:
    assert death_reason(WorkerLostError(message)) == reason


def test_the_main_process_can_rebuild_a_pool_process_lease_owner() -> None:
    assert lease_owner("host-1", 4242, "task-id") == "host-1:4242:task-id"
    assert lease_owner("host-1", 4242) != lease_owner("host-1", 4242)  # unique without a task
