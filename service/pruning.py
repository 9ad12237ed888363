"""Pruning across workers: a run is stopped when its recorded val loss is worse than its peers'.

Peers are the other trials of the run's study; outside a study, the runs of its experiment with
the same task and loss (a sweep's runs: a loss of another kind or task says nothing about this
one). Only recorded epochs count: the total val L each peer's winning attempt wrote at the same
epoch, so the decision is the same whichever worker takes it.

- median: stop when the val loss is above the peers' median (at least MIN_PEERS of them).
- asha (asynchronous successive halving): rungs at min_epochs x reduction^k epochs; at a rung a
  run goes on only when its val loss ranks within the best 1/reduction of every run that reached
  that rung so far (itself included; the first to arrive always goes on), as Optuna's
  SuccessiveHalvingPruner decides.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, select

from service.db import session_scope
from service.schema import Loss, Run, Study

MIN_PEERS = 2  # fewer runs to compare with say nothing about a median
DEFAULT_REDUCTION = 3


def _peers(run: Any) -> Any:
    """The SQL condition that picks the runs `run` is compared with."""
    if run.study_id is not None:
        return Run.study_id == run.study_id
    return and_(
        Run.experiment_id == run.experiment_id,
        Run.task == run.task,
        Run.spec["loss"].as_string() == run.spec.get("loss"),
    )


@dataclass(frozen=True)
class _Peers:
    values: list[float]  # the peers' total val loss at the epoch asked about
    rule: str | None  # the run's spec's pruner
    min_epochs: int  # ASHA's first rung
    reduction: int  # ASHA's reduction factor


def _peers_at(engine: Engine, run_id: int, epoch: int) -> _Peers:
    with session_scope(engine, read_only=True) as session:
        run = session.execute(
            select(Run.experiment_id, Run.study_id, Run.task, Run.spec).where(Run.run_id == run_id)
        ).one()
        values = session.scalars(
            select(Loss.value)
            .join(Run, (Run.run_id == Loss.run_id) & (Run.attempt == Loss.attempt))
            .where(
                _peers(run),
                Run.run_id != run_id,
                Loss.epoch == epoch,
                Loss.split == "val",
                Loss.timestep.is_(None),
                Loss.value.is_not(None),
            )
        ).all()
        study = None
        if run.study_id is not None:
            study = session.execute(
                select(Study.prune_min_epochs, Study.prune_reduction).where(
                    Study.study_id == run.study_id
                )
            ).one()
    min_epochs = run.spec.get("prune_warmup", 0) + 1
    if study is not None and study.prune_min_epochs:
        min_epochs = study.prune_min_epochs
    reduction = study.prune_reduction if study and study.prune_reduction else DEFAULT_REDUCTION
    return _Peers(list(values), run.spec.get("prune"), min_epochs, reduction)


def peer_median_val_loss(engine: Engine, run_id: int, epoch: int) -> float | None:
    """The median total val loss of the run's peers at `epoch`; None with fewer than
    MIN_PEERS of them."""
    values = _peers_at(engine, run_id, epoch).values
    return statistics.median(values) if len(values) >= MIN_PEERS else None


def is_rung(epoch: int, min_epochs: int, reduction: int) -> bool:
    """Whether `epoch` is one of ASHA's rungs: min_epochs x reduction^k."""
    rung = min_epochs
    while rung < epoch:
        rung *= reduction
    return rung == epoch


def asha_promotes(value: float, peers: list[float], reduction: int) -> bool:
    """Whether `value` ranks within the best 1/reduction of itself and `peers` (the first at a
    rung always does)."""
    ranked = sorted([*peers, value])
    keep = max(len(ranked) // reduction, 1)
    return value <= ranked[keep - 1]


def prune_reason(engine: Engine, run_id: int, epoch: int, val_loss: float) -> str | None:
    """Why the run should stop now under its spec's pruner (median or asha), or None to let it
    go on."""
    peers = _peers_at(engine, run_id, epoch)
    if peers.rule == "asha":
        if not is_rung(epoch, peers.min_epochs, peers.reduction):
            return None
        if asha_promotes(val_loss, peers.values, peers.reduction):
            return None
        return (
            f"pruned at epoch {epoch} (ASHA rung): val loss {val_loss:.4g} not in the best "
            f"1/{peers.reduction} of the {len(peers.values) + 1} runs there"
        )
    if len(peers.values) < MIN_PEERS:
        return None
    median = statistics.median(peers.values)
    if val_loss <= median:
        return None
    return f"pruned at epoch {epoch}: val loss {val_loss:.4g} above the peers' median {median:.4g}"
