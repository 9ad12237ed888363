"""The members of a fused group and how each one's training ended (see models/fusion.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from models.checkpoint import TrainingState
from models.spec import TrainSpec
from models.training import EpochReport, FitResult


@dataclass
class Member:
    spec: TrainSpec
    on_epoch: Callable[[EpochReport], None] | None = None  # as models.training.fit's on_epoch
    stop: threading.Event | None = None  # set: this member stops at its next batch ("stopped")
    resume: TrainingState | None = None  # continue after the checkpoint's epoch, exactly
    on_batch: Callable[[], None] | None = None  # progress tick after each of its batches
    # called as the member leaves the group, while the others train on: its end can be
    # recorded then, not when the whole group ends
    on_end: Callable[[MemberResult], None] | None = None


@dataclass(frozen=True)
class MemberResult:
    result: FitResult | None  # how its training ended; None when its callback raised
    error: BaseException | None  # what its own callback (on_epoch, on_batch) raised, if it did
