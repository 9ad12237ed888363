"""The ORM: a class mapped onto each table of service/tables.py, for the code that writes.

The annotations only type the attributes; the columns, keys and indexes are the tables'.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import DeclarativeBase, Mapped

from service import tables
from service.states import RunStatus, StudyState

__all__ = [
    "Base",
    "Checkpoint",
    "Dataset",
    "Experiment",
    "Loss",
    "Metric",
    "Run",
    "RunParam",
    "RunStatus",
    "RunTag",
    "RunValue",
    "Study",
    "StudyState",
]


class Base(DeclarativeBase):
    metadata = tables.metadata


class Experiment(Base):
    __table__ = tables.experiments

    experiment_id: Mapped[int]
    name: Mapped[str]
    created_at: Mapped[datetime]


class Study(Base):
    __table__ = tables.studies

    study_id: Mapped[int]
    experiment_id: Mapped[int]
    search: Mapped[str]
    objective: Mapped[str]
    direction: Mapped[str]
    trials: Mapped[int]
    parallel: Mapped[int]
    seed: Mapped[int]
    space: Mapped[dict[str, Any]]
    base_spec: Mapped[dict[str, Any]]
    queue: Mapped[str]
    priority: Mapped[int]
    max_attempts: Mapped[int]
    tags: Mapped[dict[str, str]]
    pruner: Mapped[str | None]
    prune_min_epochs: Mapped[int | None]
    prune_reduction: Mapped[int | None]
    state: Mapped[str]
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class Dataset(Base):
    __table__ = tables.datasets

    sha256: Mapped[str]
    size: Mapped[int]
    content: Mapped[bytes]
    created_at: Mapped[datetime]


class Run(Base):
    __table__ = tables.runs

    run_id: Mapped[int]
    experiment_id: Mapped[int]
    task: Mapped[str]
    model: Mapped[str]
    status: Mapped[str]
    spec: Mapped[dict[str, Any]]
    queue: Mapped[str]
    priority: Mapped[int]
    idempotency_key: Mapped[str | None]
    device: Mapped[str | None]
    worker: Mapped[str | None]
    attempt: Mapped[int]
    max_attempts: Mapped[int]
    given_back: Mapped[int]
    lease_owner: Mapped[str | None]
    lease_expires_at: Mapped[datetime | None]
    epochs_done: Mapped[int]
    final_train_loss: Mapped[float | None]
    final_val_loss: Mapped[float | None]
    best_train_loss: Mapped[float | None]
    best_val_loss: Mapped[float | None]
    final_metric: Mapped[float | None]
    best_epoch: Mapped[int | None]
    best_metric: Mapped[float | None]
    best_metrics: Mapped[dict[str, float] | None]
    final_metrics: Mapped[dict[str, float] | None]
    timesteps: Mapped[int | None]
    resumed_from_epoch: Mapped[int | None]
    error: Mapped[str | None]
    traceback: Mapped[str | None]
    created_at: Mapped[datetime]
    queued_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    study_id: Mapped[int | None]
    trial_number: Mapped[int | None]
    fusion_key: Mapped[str | None]
    group_id: Mapped[str | None]


class RunParam(Base):
    __table__ = tables.run_params

    run_id: Mapped[int]
    name: Mapped[str]
    num_value: Mapped[float | None]
    text_value: Mapped[str | None]


class RunTag(Base):
    __table__ = tables.run_tags

    run_id: Mapped[int]
    key: Mapped[str]
    value: Mapped[str]


class Loss(Base):
    __table__ = tables.losses

    loss_id: Mapped[int]
    run_id: Mapped[int]
    attempt: Mapped[int]
    epoch: Mapped[int]
    split: Mapped[str]
    timestep: Mapped[int | None]
    value: Mapped[float | None]
    value_kind: Mapped[str]


class Metric(Base):
    __table__ = tables.metrics

    metric_id: Mapped[int]
    run_id: Mapped[int]
    attempt: Mapped[int]
    epoch: Mapped[int]
    split: Mapped[str]
    name: Mapped[str]
    timestep: Mapped[int | None]
    value: Mapped[float]


class RunValue(Base):
    __table__ = tables.run_values

    run_id: Mapped[int]
    at: Mapped[str]
    split: Mapped[str]
    name: Mapped[str]
    timestep: Mapped[int]
    attempt: Mapped[int]
    epoch: Mapped[int]
    value: Mapped[float | None]


class Checkpoint(Base):
    __table__ = tables.checkpoints

    run_id: Mapped[int]
    attempt: Mapped[int]
    epoch: Mapped[int]
    state: Mapped[bytes]
    created_at: Mapped[datetime]
    best_attempt: Mapped[int | None]
    best_epoch: Mapped[int | None]
    best_state: Mapped[bytes | None]
