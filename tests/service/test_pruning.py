"""Pruning decisions: only peers count (a study's trials, or a sweep's runs of the same task and
loss), only recorded epochs, and ASHA's rungs and ranks."""

from __future__ import annotations

from dataclasses import replace

import pytest
from study_support import study_plan, trials
from support import Split, claim, new_run

from service.lifecycle import record_epoch
from service.pruning import asha_promotes, is_rung, prune_reason
from service.search_space import Space
from service.study import create_study


def _with_val_loss(engine, run_id: int, *losses: float) -> None:  # noqa: ANN001
    attempt = claim(engine, run_id)
    for epoch, loss in enumerate(losses, start=1):
        record_epoch(engine, run_id, attempt, epoch, {"train": Split(loss), "val": Split(loss)})


def test_asha_rungs_are_min_epochs_times_powers_of_the_reduction() -> None:
    assert [e for e in range(1, 30) if is_rung(e, 1, 3)] == [1, 3, 9, 27]
    assert [e for e in range(1, 30) if is_rung(e, 2, 2)] == [2, 4, 8, 16]


def test_asha_keeps_the_best_fraction_and_the_first_to_arrive() -> None:
    assert asha_promotes(5.0, [], 3)  # the first at a rung goes on
    assert not asha_promotes(5.0, [1.0, 2.0], 3)  # 3 runs: the best 1 goes on
    assert asha_promotes(1.5, [1.0, 2.0, 3.0, 4.0, 5.0], 3)  # 6 runs: the best 2
    assert not asha_promotes(2.5, [1.0, 2.0, 3.0, 4.0, 5.0], 3)


def test_median_pruning_compares_only_runs_of_the_same_task_and_loss(engine) -> None:  # noqa: ANN001
    mine = new_run(engine, task="binary", experiment="sw", prune="median", loss="cross_entropy")
    peers = [new_run(engine, task="binary", experiment="sw", loss="cross_entropy") for _ in "ab"]
    strangers = [new_run(engine, task="binary", experiment="sw", loss="mse") for _ in "ab"]
    others = [new_run(engine, task="sentiment", experiment="sw") for _ in "ab"]
    for run in peers:
        _with_val_loss(engine, run.id, 1.0, 0.9)
    for run in [*strangers, *others]:
        _with_val_loss(engine, run.id, 0.01, 0.01)  # far better, but not comparable
    assert prune_reason(engine, mine.id, 2, 0.85) is None  # the strangers would prune it
    assert "above the peers' median 0.9" in prune_reason(engine, mine.id, 2, 1.5)


def test_a_trial_is_pruned_by_asha_against_its_own_study_only(engine, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr("service.lifecycle.publish_trials", lambda added: None)
    space = Space((), frozenset(), {"hidden": (8, 16, 32, 64)})
    base = {"task": "binary", "model": "mlp", "epochs": "9", "device": "cpu", "prune": "asha"}
    plan = study_plan(search="grid", space=space, trials=4, parallel=4, base_spec=base)
    create_study(engine, replace(plan, pruner="asha", prune_min_epochs=1, prune_reduction=2))
    first, second, third, fourth = (t.run_id for t in trials(engine))
    other = new_run(engine, task="binary", experiment="st", loss="cross_entropy")
    _with_val_loss(engine, other.id, 0.01, 0.01)  # same experiment, not in the study
    _with_val_loss(engine, first, 0.5)
    _with_val_loss(engine, second, 0.4)
    _with_val_loss(engine, third, 0.3)
    # Rungs at 1, 2, 4: at epoch 1 the best half of the four goes on.
    assert prune_reason(engine, fourth, 1, 0.35) is None
    assert "ASHA rung" in prune_reason(engine, fourth, 1, 0.45)
    assert prune_reason(engine, fourth, 3, 9.0) is None  # not a rung


@pytest.mark.parametrize("rule", ["median", "asha"])
def test_a_run_with_no_peers_is_never_pruned(engine, rule: str) -> None:  # noqa: ANN001
    alone = new_run(engine, task="binary", experiment="solo", prune=rule)
    assert prune_reason(engine, alone.id, 1, 1e9) is None
