"""run_values: one row per ended run and value that sorts read, written as the run ends and
filled from the recorded epochs by revision 0008; sorts merge it with the runs still training."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select
from support import Split, claim, new_run, old_run, run_columns

from service.db import downgrade, make_engine, session_scope, upgrade
from service.filters import RunFilter
from service.lifecycle import cancel_run, finish_run, reap_expired_leases, record_epoch
from service.records import utcnow
from service.schema import Loss, Metric, RunStatus, RunValue
from service.store import iter_runs, list_runs


def _splits(val: float, exact: float) -> dict[str, Split]:
    """T = 2: L_t = val / 2 each, exact match `exact`, token accuracy 1 - val at each step."""
    return {
        split: Split(
            total,
            [total / 2, total / 2],
            1 - total,
            {"token_accuracy": 1 - total, "exact_match": exact},
            {"token_accuracy": [1 - total, 1 - total]},
        )
        for split, total in (("train", val / 2), ("val", val))
    }


def _values(engine, run_id: int) -> dict[tuple, tuple]:  # noqa: ANN001
    """(at, split, name, timestep) → (attempt, epoch, value) of the run's rows."""
    with session_scope(engine) as session:
        rows = session.scalars(select(RunValue).where(RunValue.run_id == run_id))
        return {(r.at, r.split, r.name, r.timestep): (r.attempt, r.epoch, r.value) for r in rows}


def _ids(engine, sort: str) -> list[int]:  # noqa: ANN001
    return [r.id for r in list_runs(engine, sort=sort, descending=False)]


def _trained(engine, curve: list[tuple[float, float]], end: RunStatus | None) -> int:  # noqa: ANN001
    """A run that recorded the epochs of `curve` ((val L, exact match) each), ended `end`."""
    run = new_run(engine).id
    attempt = claim(engine, run)
    for epoch, (val, exact) in enumerate(curve, start=1):
        record_epoch(engine, run, attempt, epoch, _splits(val, exact))
    if end is not None:
        finish_run(engine, run, attempt, end)
    return run


def test_a_run_gets_its_values_when_it_ends_not_while_it_trains(engine) -> None:  # noqa: ANN001
    run = _trained(engine, [(0.8, 0.1), (0.4, 0.5), (0.6, 0.3)], None)
    assert _values(engine, run) == {}
    finish_run(engine, run, run_columns(engine, run, "attempt")[0], RunStatus.SUCCEEDED)
    values = _values(engine, run)
    # Per split: L_1, L_2, two whole-split metrics, token accuracy at 2 steps; best: val only.
    assert len(values) == 2 * 6 + 4
    attempt = run_columns(engine, run, "attempt")[0]
    assert values[("last", "val", "loss", 2)] == (attempt, 3, 0.3)
    assert values[("last", "train", "exact_match", 0)] == (attempt, 3, 0.3)
    assert values[("best", "val", "exact_match", 0)] == (attempt, 2, 0.5)
    assert values[("best", "val", "token_accuracy", 1)] == (attempt, 2, 0.6)
    assert not any(at == "best" and split == "train" for at, split, *_ in values)


def test_a_cancel_and_a_give_up_settle_the_values_too(engine) -> None:  # noqa: ANN001
    cancelled = _trained(engine, [(0.5, 0.5)], None)
    cancel_run(engine, cancelled)
    assert _values(engine, cancelled)[("last", "val", "loss", 1)][2] == 0.25
    spent = new_run(engine, max_attempts=1).id
    record_epoch(engine, spent, claim(engine, spent, lease=1), 1, _splits(0.7, 0.2))
    reap_expired_leases(engine, now=utcnow() + timedelta(seconds=5))
    assert run_columns(engine, spent, "status") == ("failed",)
    assert _values(engine, spent)[("best", "val", "exact_match", 0)][2] == 0.2


@pytest.mark.parametrize("descending", [False, True])
def test_sorts_merge_ended_runs_with_runs_still_training(engine, descending: bool) -> None:  # noqa: ANN001
    a = _trained(engine, [(0.9, 0.2), (0.2, 0.9)], RunStatus.SUCCEEDED)
    b = _trained(engine, [(0.5, 0.4)], None)  # still training
    c = _trained(engine, [(0.1, 0.8), (0.7, 0.3)], RunStatus.DIVERGED)
    d = _trained(engine, [(0.3, 0.6)], None)
    queued = new_run(engine).id

    def ids(sort: str, limit: int | None = None) -> list[int]:
        found = list_runs(engine, sort=sort, descending=descending, limit=limit)
        return [r.id for r in found]

    def order(*runs: int) -> list[int]:
        return [*(reversed(runs) if descending else runs), queued]

    assert ids("val_loss_t[2]") == order(a, d, b, c)  # 0.1, 0.15, 0.25, 0.35
    assert ids("val_exact_match") == order(c, b, d, a)  # 0.3, 0.4, 0.6, 0.9
    assert ids("best_val_exact_match") == order(b, d, c, a)  # 0.4, 0.6, 0.8, 0.9
    assert ids("train_token_accuracy_t[1]") == order(c, b, d, a)  # 0.65, 0.75, 0.85, 0.9
    assert ids("val_loss_t[2]", limit=2) == order(a, d, b, c)[:2]
    exported = [r.id for r in iter_runs(engine, RunFilter(), "val_loss_t[1]", descending)]
    assert exported == order(a, d, b, c)


def _recorded_before_0008(engine, status: str, scale: float) -> tuple[int, int]:  # noqa: ANN001
    """A run with epochs 1 (val L 0.4 x scale) and 2 (0.8 x scale), the best epoch 1, in
    `status`, as revision 0007's writer left it: (run id, attempt)."""
    run, attempt = old_run(engine, {"task": "translation", "model": "rnn"}, claimed=True), 1
    with session_scope(engine) as session:
        for epoch, val in ((1, 0.4 * scale), (2, 0.8 * scale)):
            key = {"run_id": run, "attempt": attempt, "epoch": epoch, "split": "val"}
            session.execute(
                insert(Loss),
                [{**key, "timestep": t, "value": val / 2, "value_kind": "finite"} for t in (1, 2)]
                + [{**key, "timestep": None, "value": val, "value_kind": "finite"}],
            )
            session.execute(
                insert(Metric),
                [
                    {**key, "name": "exact_match", "timestep": None, "value": 1 - val},
                    {**key, "name": "token_accuracy", "timestep": 2, "value": 1 - val},
                ],
            )
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"UPDATE runs SET epochs_done = 2, best_epoch = 1, timesteps = 2, status = '{status}' "
            f"WHERE run_id = {run}"
        )
    return run, attempt


def test_revision_0008_fills_the_values_of_runs_that_ended_before_it(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine, "0007")
    ended, attempt = _recorded_before_0008(engine, "succeeded", 1.0)
    training, _ = _recorded_before_0008(engine, "running", 0.5)

    upgrade(engine)
    assert _values(engine, ended) == {
        ("last", "val", "loss", 1): (attempt, 2, 0.4),
        ("last", "val", "loss", 2): (attempt, 2, 0.4),
        ("last", "val", "exact_match", 0): (attempt, 2, 1 - 0.8),
        ("last", "val", "token_accuracy", 2): (attempt, 2, 1 - 0.8),
        ("best", "val", "exact_match", 0): (attempt, 1, 1 - 0.4),
        ("best", "val", "token_accuracy", 2): (attempt, 1, 1 - 0.4),
    }
    assert _values(engine, training) == {}
    assert _ids(engine, "val_loss_t[2]") == [training, ended]
    downgrade(engine, "0007")
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Loss)) == 12
