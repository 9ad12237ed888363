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

from models.data import TaskData
from models.fused_mlp import StackedGroup
from models.lockstep import LockstepGroup
from models.members import Member, MemberResult
from models.spec import fusion_key, trains_stacked

__all__ = ["Member", "MemberResult", "fit_group", "fusion_key"]


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
    stacked = trains_stacked(members[0].spec.model, device)
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
