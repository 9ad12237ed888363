"""Revision 0007 keeps each run's output timesteps T, which per-timestep filters test first."""

from __future__ import annotations

from sqlalchemy import insert, update
from support import Split, claim, new_run, old_run, run_columns

from service.db import downgrade, make_engine, session_scope, upgrade
from service.lifecycle import record_epoch
from service.schema import Loss, Run
from service.store import list_runs


def _trained_before(engine, task: str, steps: int, value: float) -> int:  # noqa: ANN001
    """A run with one epoch of losses, L_1..L_steps = value, written as before revision 0007."""
    run_id, attempt = old_run(engine, {"task": task, "model": "rnn"}, claimed=True), 1
    key = {"run_id": run_id, "attempt": attempt, "epoch": 1, "value_kind": "finite"}
    rows = [
        {**key, "split": split, "timestep": t, "value": value if t else value * steps}
        for split in ("train", "val")
        for t in [*range(1, steps + 1), None]
    ]
    with session_scope(engine) as session:
        session.execute(insert(Loss), rows)
        session.execute(update(Run).where(Run.run_id == run_id).values(epochs_done=1))
    return run_id


def test_old_runs_get_their_timesteps_and_per_timestep_filters_still_find_them(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    upgrade(engine, "0006")
    label = _trained_before(engine, "sentiment", 1, 0.1)
    sequence = _trained_before(engine, "translation", 4, 0.1)
    queued = old_run(engine, {"task": "translation", "model": "rnn"})

    upgrade(engine)
    assert [run_columns(engine, r, "timesteps") for r in (label, sequence, queued)] == [
        (1,),
        (4,),
        (None,),
    ]
    assert [r.id for r in list_runs(engine, where="val_loss_t[1] < 0.2")] == [sequence, label]
    assert [r.id for r in list_runs(engine, where="val_loss_t[3] < 0.2")] == [sequence]
    assert [r.id for r in list_runs(engine, where="not val_loss_t[3] >= 0.2")] == [sequence]
    downgrade(engine, "0006")


def test_each_epoch_records_the_runs_timesteps(engine) -> None:  # noqa: ANN001
    run_id = new_run(engine).id
    attempt = claim(engine, run_id)
    record_epoch(engine, run_id, attempt, 1, {"val": Split(0.9, [0.3, 0.3, 0.3])})
    assert run_columns(engine, run_id, "timesteps") == (3,)
    # A per-timestep filter asks the run's T first: a row at t > T is not the run's.
    assert [r.id for r in list_runs(engine, where="val_loss_t[3] = 0.3")] == [run_id]
    with session_scope(engine) as session:
        session.execute(update(Run).where(Run.run_id == run_id).values(timesteps=2))
    assert list_runs(engine, where="val_loss_t[3] = 0.3") == []
