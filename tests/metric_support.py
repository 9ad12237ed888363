"""Metric rows and a run's best/final columns written as the training side's contract says:
whole-split metrics with timestep NULL, per-timestep token_accuracy 1-based, best_epoch the
epoch with the lowest val L (ties to the earlier), best_metrics / final_metrics every
whole-split val metric at the best and the last epoch."""

from __future__ import annotations

from sqlalchemy import insert, update
from support import Split

from service.db import session_scope
from service.lifecycle import record_epoch
from service.schema import Metric, Run

# epoch → split → {name or (name, t): value}
Curves = dict[int, dict[str, dict[str | tuple[str, int], float]]]


def write_metrics(engine, run_id: int, attempt: int, curves: Curves, val_losses: list[float]):  # noqa: ANN001, ANN201
    """Losses and metric rows of epochs 1..n, and the run's best/final columns, as the writer
    keeps them; the best epoch is the one with the lowest val L (ties to the earlier)."""
    keys = [key for epoch in curves.values() for values in epoch.values() for key in values]
    steps = max((key[1] for key in keys if isinstance(key, tuple)), default=1)
    for epoch, val_loss in enumerate(val_losses, start=1):
        losses = {
            split: Split(total, [total / steps] * steps)
            for split, total in (("train", val_loss / 2), ("val", val_loss))
        }
        record_epoch(engine, run_id, attempt, epoch, losses)
    rows = [
        {
            "run_id": run_id,
            "attempt": attempt,
            "epoch": epoch,
            "split": split,
            "name": key if isinstance(key, str) else key[0],
            "timestep": None if isinstance(key, str) else key[1],
            "value": value,
        }
        for epoch, splits in curves.items()
        for split, values in splits.items()
        for key, value in values.items()
    ]
    best = min(range(len(val_losses)), key=lambda i: (val_losses[i], i)) + 1
    whole = {
        epoch: {k: v for k, v in curves[epoch]["val"].items() if isinstance(k, str)}
        for epoch in curves
    }
    primary = "accuracy" if "accuracy" in whole[best] else "token_accuracy"
    with session_scope(engine) as session:
        session.execute(insert(Metric), rows)
        session.execute(
            update(Run)
            .where(Run.run_id == run_id)
            .values(
                best_epoch=best,
                best_metric=whole[best][primary],
                best_metrics=whole[best],
                final_metrics=whole[len(val_losses)],
                final_metric=whole[len(val_losses)][primary],
            )
        )


def sequence(token: float, exact: float, steps: list[float]) -> dict:
    return {
        "token_accuracy": token,
        "exact_match": exact,
        **{("token_accuracy", t): v for t, v in enumerate(steps, start=1)},
    }
