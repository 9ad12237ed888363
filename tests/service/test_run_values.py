"""run_values: one row per run and value that sorts read, kept current as the run trains,
rebuilt on a resume, and filled from the recorded epochs by revision 0008."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, insert, select
from support import Split, claim, new_run

from service.checkpoints import adopt_checkpoint, load_checkpoint
from service.db import downgrade, make_engine, session_scope, upgrade
from service.lifecycle import reap_expired_leases, record_epoch
from service.records import utcnow
from service.schema import Loss, Metric, RunValue
from service.store import list_runs


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


def test_each_epoch_replaces_the_last_values_and_a_better_one_the_best(engine) -> None:  # noqa: ANN001
    run = new_run(engine).id
    attempt = claim(engine, run)
    for epoch, (val, exact) in enumerate([(0.8, 0.1), (0.4, 0.5), (0.6, 0.3)], start=1):
        record_epoch(engine, run, attempt, epoch, _splits(val, exact))
    values = _values(engine, run)
    # Per split: L_1, L_2, two whole-split metrics, token accuracy at 2 steps; best: val only.
    assert len(values) == 2 * 6 + 4
    assert values[("last", "val", "loss", 2)] == (attempt, 3, 0.3)
    assert values[("last", "train", "exact_match", 0)] == (attempt, 3, 0.3)
    assert values[("best", "val", "exact_match", 0)] == (attempt, 2, 0.5)
    assert values[("best", "val", "token_accuracy", 1)] == (attempt, 2, 0.6)
    assert not any(at == "best" and split == "train" for at, split, *_ in values)


def test_sorts_read_the_last_and_best_values(engine) -> None:  # noqa: ANN001
    runs = []
    for curve in ([(0.9, 0.2), (0.2, 0.9)], [(0.5, 0.4)], [(0.1, 0.8), (0.7, 0.3)]):
        run = new_run(engine).id
        attempt = claim(engine, run)
        for epoch, (val, exact) in enumerate(curve, start=1):
            record_epoch(engine, run, attempt, epoch, _splits(val, exact))
        runs.append(run)
    queued = new_run(engine).id
    a, b, c = runs
    assert _ids(engine, "val_loss_t[2]") == [a, b, c, queued]  # 0.1, 0.25, 0.35
    assert _ids(engine, "val_exact_match") == [c, b, a, queued]  # 0.3, 0.4, 0.9
    assert _ids(engine, "best_val_exact_match") == [b, c, a, queued]  # 0.4, 0.8, 0.9
    assert _ids(engine, "train_token_accuracy_t[1]") == [c, b, a, queued]  # 0.65, 0.75, 0.9


def test_a_resume_rebuilds_the_values_from_the_checkpoints_epoch(engine) -> None:  # noqa: ANN001
    run = new_run(engine).id
    first = claim(engine, run, lease=1)
    record_epoch(engine, run, first, 1, _splits(0.6, 0.2), b"state 1")
    record_epoch(engine, run, first, 2, _splits(0.4, 0.6), b"state 2")
    reap_expired_leases(engine, now=utcnow() + timedelta(seconds=5))
    second = claim(engine, run)
    assert adopt_checkpoint(engine, run, second, load_checkpoint(engine, run))
    values = _values(engine, run)
    assert values[("last", "val", "loss", 1)] == (second, 2, 0.2)
    assert values[("best", "val", "exact_match", 0)] == (second, 2, 0.6)
    other = new_run(engine).id
    record_epoch(engine, other, claim(engine, other), 1, _splits(0.5, 0.5))
    assert _ids(engine, "val_loss_t[1]") == [run, other]
    assert _ids(engine, "best_val_exact_match") == [other, run]


def test_revision_0008_fills_the_values_of_runs_recorded_before_it(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine, "0007")
    run = new_run(engine).id
    attempt = claim(engine, run)
    with session_scope(engine) as session:  # epochs 1 and 2 as revision 0007's writer left them
        for epoch, val in ((1, 0.4), (2, 0.8)):
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
            f"UPDATE runs SET epochs_done = 2, best_epoch = 1, timesteps = 2 WHERE run_id = {run}"
        )

    upgrade(engine)
    values = _values(engine, run)
    assert values == {
        ("last", "val", "loss", 1): (attempt, 2, 0.4),
        ("last", "val", "loss", 2): (attempt, 2, 0.4),
        ("last", "val", "exact_match", 0): (attempt, 2, 1 - 0.8),
        ("last", "val", "token_accuracy", 2): (attempt, 2, 1 - 0.8),
        ("best", "val", "exact_match", 0): (attempt, 1, 1 - 0.4),
        ("best", "val", "token_accuracy", 2): (attempt, 1, 1 - 0.4),
    }
    assert _ids(engine, "val_loss_t[2]") == [run]
    downgrade(engine, "0007")
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Loss)) == 6
