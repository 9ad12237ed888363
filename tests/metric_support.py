"""Metric rows and a run's best/final columns written as the training side's contract says:
whole-split metrics with timestep NULL, per-timestep token_accuracy 1-based, best_epoch the
epoch with the lowest val L (ties to the earlier), best_metrics / final_metrics every
whole-split val metric at the best and the last epoch."""

from __future__ import annotations

from support import Split

from service.lifecycle import record_epoch

# epoch → split → {name or (name, t): value}
Curves = dict[int, dict[str, dict[str | tuple[str, int], float]]]


def write_metrics(engine, run_id: int, attempt: int, curves: Curves, val_losses: list[float]):  # noqa: ANN001, ANN201
    """Epochs 1..n recorded as the worker records them: L_1..L_T (T the curves' last step,
    train L half the val L) and the curves' metrics; the writer keeps the best epoch (the
    one with the lowest val L, ties to the earlier) and the best/final columns."""
    keys = [key for epoch in curves.values() for values in epoch.values() for key in values]
    steps = max((key[1] for key in keys if isinstance(key, tuple)), default=1)
    for epoch, val_loss in enumerate(val_losses, start=1):
        splits = {}
        for split, total in (("train", val_loss / 2), ("val", val_loss)):
            values = curves.get(epoch, {}).get(split, {})
            whole = {k: v for k, v in values.items() if isinstance(k, str)}
            per_step: dict[str, list[float]] = {}
            for (name, _), value in sorted(
                (k, v) for k, v in values.items() if isinstance(k, tuple)
            ):
                per_step.setdefault(name, []).append(value)
            primary = whole.get("accuracy", whole.get("token_accuracy"))
            splits[split] = Split(total, [total / steps] * steps, primary, whole, per_step)
        record_epoch(engine, run_id, attempt, epoch, splits)


def sequence(token: float, exact: float, steps: list[float]) -> dict:
    return {
        "token_accuracy": token,
        "exact_match": exact,
        **{("token_accuracy", t): v for t, v in enumerate(steps, start=1)},
    }
