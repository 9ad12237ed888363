"""The checker on hand-made histories: a clean one passes, and each rule catches its violation."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from benchmarks.chaos.checker import RULES, check
from benchmarks.chaos.history import Final, LossRow, RunState
from benchmarks.chaos.plan import RunPlan

EPOCHS = 2
PLAN = [RunPlan(index=0, at=0.0, options={"task": "binary", "epochs": EPOCHS})]


def rows(attempt: int = 1, first_id: int = 1, epochs: int = EPOCHS, shift: float = 0.0) -> list:
    """An attempt's complete rows: per epoch and split, L_1 and the total L (T = 1)."""
    made = []
    for epoch in range(1, epochs + 1):
        for split in ("train", "val"):
            for timestep in (1, None):
                value = 1.0 / epoch + (0.5 if split == "val" else 0.0) + shift
                made.append(LossRow(first_id + len(made), attempt, epoch, split, timestep, value))
    return made


def run(**changes) -> RunState:  # noqa: ANN003
    base = RunState(1, "chaos-0", "succeeded", 1, EPOCHS, False, rows())
    return replace(base, **changes)


def events(*extra: dict, phase: str = "ok") -> list[dict]:
    return [
        {"t": 0.0, "type": "submit", "phase": "invoke", "key": "chaos-0"},
        {"t": 1.0, "type": "submit", "phase": phase, "key": "chaos-0", "run_id": 1},
        {"t": 1.5, "type": "observe", "run_id": 1, "status": "running", "attempt": 1,
         "epochs_done": 0, "worker": "w"},
        {"t": 3.0, "type": "observe", "run_id": 1, "status": "succeeded", "attempt": 1,
         "epochs_done": EPOCHS, "worker": "w"},
        *extra,
    ]  # fmt: skip


def final(state: RunState | None = None, **changes) -> Final:  # noqa: ANN003
    state = state or run()
    base = Final({state.run_id: state}, {"chaos-0": rows()}, [True, True, True])
    return replace(base, **changes)


def rules_broken(verdict) -> set[str]:  # noqa: ANN001
    return {violation.rule for violation in verdict.violations}


def test_a_clean_campaign_is_valid_with_its_counts() -> None:
    verdict = check(PLAN, events(), final())
    assert verdict.valid, verdict.violations
    assert (verdict.attempted, verdict.acknowledged, verdict.lost, verdict.compared) == (1, 1, 0, 1)
    assert verdict.jepsen_line().startswith("{:valid? true, :attempt-count 1")


def test_an_acknowledged_run_missing_from_the_database_is_lost() -> None:
    verdict = check(PLAN, events(), final(run(run_id=1, key="other")))
    assert "lost" in rules_broken(verdict)
    assert verdict.lost == 1 and verdict.unexpected == 1


def test_an_unacknowledged_run_that_exists_must_end_too() -> None:
    stuck = run(status="queued", attempt=0, epochs_done=0, losses=[])
    verdict = check(PLAN, events(phase="info"), final(stuck))
    assert {"lost", "not_quiet", "unsettled"} <= rules_broken(verdict)
    recovered = check(PLAN, events(phase="info"), final())
    assert recovered.valid and recovered.recovered == 1 and recovered.acknowledged == 0


def test_a_terminal_run_that_keeps_its_lease_is_unsettled() -> None:
    assert rules_broken(check(PLAN, events(), final(run(leased=True)))) == {"unsettled"}


@pytest.mark.parametrize(
    "losses",
    [rows()[:-1], rows() + [LossRow(99, 1, EPOCHS + 1, "val", None, 0.1)]],
    ids=["a row short", "a row too many"],
)
def test_the_winning_attempt_has_exactly_its_rows(losses: list) -> None:
    broken = rules_broken(check(PLAN, events(), final(run(losses=losses))))
    assert "unsettled" in broken


def test_a_run_that_succeeded_short_of_its_epochs_is_unsettled() -> None:
    short = run(epochs_done=1, losses=rows(epochs=1))
    assert "unsettled" in rules_broken(check(PLAN, events(), final(short)))


def test_a_terminal_state_left_is_caught() -> None:
    requeued = {"t": 4.0, "type": "observe", "run_id": 1, "status": "queued", "attempt": 1,
                "epochs_done": EPOCHS, "worker": "w"}  # fmt: skip
    assert rules_broken(check(PLAN, events(requeued), final())) == {"left_terminal"}


def test_a_row_recorded_twice_is_caught() -> None:
    losses = rows()
    twice = losses + [replace(losses[0], loss_id=100)]
    assert "duplicate_rows" in rules_broken(check(PLAN, events(), final(run(losses=twice))))


def test_an_older_attempt_writing_after_a_newer_claim_is_caught() -> None:
    newer = rows(attempt=2, first_id=10)
    late = LossRow(50, 1, 1, "train", None, 1.0)  # attempt 1, written after attempt 2's rows
    state = run(attempt=2, losses=[*newer, late])
    assert "stale_write" in rules_broken(check(PLAN, events(), final(state)))
    in_order = run(attempt=2, losses=[LossRow(5, 1, 1, "train", None, 1.0), *newer])
    assert check(PLAN, events(), final(in_order)).valid


def test_rows_of_an_older_attempt_that_appear_after_a_newer_claim_was_seen_are_caught() -> None:
    def rows_event(t: float, passed: int, count: int) -> dict:
        return {"t": t, "type": "rows", "run_id": 1, "attempt": 1, "count": count, "passed": passed}

    claimed = {"t": 2.0, "type": "observe", "run_id": 1, "status": "running", "attempt": 2,
               "epochs_done": 0, "worker": "w", "passed": 7}  # fmt: skip
    *start, ended = events()
    before = [*start, rows_event(1.6, 2, 4), claimed]
    same_pass = check(PLAN, [*before, rows_event(2.0, 7, 8), ended], final())
    assert same_pass.valid, "rows read in the pass that saw the claim may predate it"
    late = check(PLAN, [*before, rows_event(2.5, 8, 8), ended], final())
    assert rules_broken(late) == {"stale_write"}


def test_losses_must_equal_the_reference_bit_for_bit() -> None:
    reference = rows()
    nudged = [replace(row, value=math.nextafter(row.value, 2.0)) for row in reference]
    broken = check(PLAN, events(), final(run(losses=nudged)))
    assert rules_broken(broken) == {"reference"}
    assert "differ" in str(broken.violations[0])
    missing = check(PLAN, events(), final(references={}))
    assert rules_broken(missing) == {"reference"}


def test_a_dead_worker_is_caught() -> None:
    verdict = check(PLAN, events(), final(workers_alive=[True, False, True]))
    assert rules_broken(verdict) == {"worker_dead"}


def test_every_rule_is_tested_here() -> None:
    source = open(__file__, encoding="utf-8").read()
    assert all(f'"{rule}"' in source for rule in RULES)
