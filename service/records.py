"""Plain records that cross the store's boundary: never live ORM rows."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; every one expq stores is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Dispatch:
    """A run to (re)publish to the broker."""

    run_id: int
    queue: str
    priority: int


@dataclass(frozen=True)
class RunRecord:
    id: int
    experiment: str
    task: str
    model: str
    status: str
    params: dict[str, Any]
    spec: dict[str, Any]
    tags: dict[str, str]
    queue: str
    priority: int
    device: str | None
    worker: str | None
    attempt: int
    max_attempts: int
    epochs_done: int
    final_train_loss: float | None
    final_val_loss: float | None
    best_train_loss: float | None
    best_val_loss: float | None
    final_metric: float | None
    error: str | None
    traceback: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    resumed_from_epoch: int | None = None  # the checkpoint epoch the winning attempt began at
    # The epoch with the lowest finite val L and its primary val metric; the whole-split val
    # metrics by name there and at the last epoch. None and {} for runs from before 0005.
    best_epoch: int | None = None
    best_metric: float | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    final_metrics: dict[str, float] = field(default_factory=dict)
    trial: int | None = None  # its trial number (0-based) when an adaptive search added it
    group: str | None = None  # the fused group its last attempt trained in; None: alone
    given_back: int = 0  # attempts a worker's shutdown gave back: max_attempts does not count them

    def to_json(self) -> dict[str, Any]:
        """The run as DESIGN.md's JSON contract: timestamps in ISO 8601, UTC."""
        data = asdict(self)
        for key in ("created_at", "started_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


@dataclass(frozen=True)
class LossRecord:
    epoch: int
    split: str
    timestep: int | None  # 1-based; None for the total L
    value: float

    def to_json(self) -> dict[str, Any]:
        value = self.value if math.isfinite(self.value) else str(self.value)
        return {"epoch": self.epoch, "split": self.split, "timestep": self.timestep, "value": value}


@dataclass(frozen=True)
class MetricRecord:
    epoch: int
    split: str
    name: str
    timestep: int | None  # 1-based for a per-timestep metric; None for the whole split
    value: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
