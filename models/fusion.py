"""Fused training: runs of one shape on one dataset trained side by side in one process, each
member exactly as `models.training.fit` trains it alone: bit-for-bit equal per-epoch losses,
metrics, weights and checkpoints (tests/models/test_fusion.py).

How: MLPs on the CPU train stacked (models/fused_mlp.py: batched matmuls over every member,
the speedup); everything else trains in lockstep (models/lockstep.py: one member after another,
each on its own model and random state; no speedup, only the shared data and process). Not
thread-safe: the members own the process's global random generators while the group trains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from models.data import TaskData, data_seed
from models.fused_mlp import StackedGroup
from models.lockstep import LockstepGroup
from models.members import Member, MemberResult
from models.spec import TrainSpec

__all__ = ["Member", "MemberResult", "fit_group", "fusion_key"]


def fusion_key(spec: TrainSpec) -> tuple[Any, ...]:
    """Runs whose specs have equal keys may train in one group: the same data and split, and
    the same shapes. Left out, because each member keeps its own: lr, momentum, weight decay,
    dropout, grad clip, seed, epochs, patience, time limit and pruning."""
    split = None if spec.val_data is not None else (spec.val_fraction, data_seed(spec))
    source = (spec.data, spec.val_data) if spec.data is not None else (spec.seq_len, spec.samples)
    return (
        spec.task,
        source,
        split,
        spec.model,
        spec.cell if spec.model == "rnn" else None,
        spec.hidden,
        spec.layers,
        spec.activation if spec.model == "mlp" else None,
        spec.loss,
        spec.batch_size,
        spec.device,
    )


def fit_group(
    members: Sequence[Member],
    data: TaskData,
    device: str,
    checkpoints: bool = False,
    admit: Callable[[], Sequence[Member]] | None = None,
) -> list[MemberResult]:
    """Train every member on the shared `data` (built once for their common `fusion_key`) on
    `device`, each exactly as `fit` would train it alone.

    Results come in the order members joined; `admit` is asked for more at every epoch
    boundary while the group trains, and those it returns are appended. A member leaves when
    its training ends or its own callback raises (its result then carries the error); the
    others go on untouched. An exception from training itself (a device fault) propagates and
    ends every member's attempt.
    """
    if not members:
        return []
    key = fusion_key(members[0].spec)
    stacked = members[0].spec.model == "mlp" and device == "cpu"
    group = (StackedGroup if stacked else LockstepGroup)(data, device, checkpoints)
    for member in members:
        _check(key, member)
        group.join(member)
    while group.trainers:
        group.epoch()
        if admit is not None and group.trainers:
            for member in admit():
                _check(key, member)
                group.join(member)
    return [result for result in group.results if result is not None]


def _check(key: tuple[Any, ...], member: Member) -> None:
    if fusion_key(member.spec) != key:
        raise ValueError(f"a member's spec does not fuse with the group's: {member.spec}")
