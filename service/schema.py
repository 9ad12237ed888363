"""The SQLAlchemy ORM: experiments, studies, runs with their hyperparameters and tags, losses,
datasets.

The Alembic revisions in migrations/ create exactly this schema; a test compares the two.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import CreateIndex

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def partial_index(name: str, *columns: str, where: str, unique: bool = False) -> Index:
    """An index over the rows where `where` holds, on SQLite and PostgreSQL alike.

    Not `sqlite_where=` / `postgresql_where=`: naming a dialect's option imports that dialect,
    and the PostgreSQL one would cost every SQLite command's start-up.
    """
    return Index(name, *columns, unique=unique, info={"where": where})


@compiles(CreateIndex)
def _create_partial_index(create: CreateIndex, compiler: Any, **kw: Any) -> str:
    sql = compiler.visit_create_index(create, **kw)
    where = create.element.info.get("where")
    return f"{sql} WHERE {where}" if where else sql


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DIVERGED = "diverged"
    CANCELLED = "cancelled"
    PRUNED = "pruned"

    @classmethod
    def terminal(cls) -> frozenset[RunStatus]:
        return frozenset({cls.SUCCEEDED, cls.FAILED, cls.DIVERGED, cls.CANCELLED, cls.PRUNED})


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Experiment(Base):
    __tablename__ = "experiments"

    experiment_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StudyState(enum.StrEnum):
    ACTIVE = "active"  # trials are added as others end, up to `parallel` in flight
    STOPPED = "stopped"  # by `expq sweep stop`: nothing more is added
    DONE = "done"  # every one of its `trials` trials ended


class Study(Base):
    """An adaptive search: the sweep's space, its sampler and objective, and how far it got.

    Its trials are runs (runs.study_id, runs.trial_number); the sampler's state is rebuilt from
    them whenever a trial is added, so no process keeps the study in memory.
    """

    __tablename__ = "studies"

    study_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.experiment_id"), unique=True)
    search: Mapped[str] = mapped_column(String(16))
    objective: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8))  # minimize or maximize
    trials: Mapped[int] = mapped_column(Integer)
    parallel: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    # {"ranges": [{name, low, high, log, integer}], "choices": {name: [values as typed]}}
    space: Mapped[dict[str, Any]] = mapped_column(JSON)
    base_spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # the options every trial shares
    queue: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    tags: Mapped[dict[str, str]] = mapped_column(JSON)
    pruner: Mapped[str | None] = mapped_column(String(16))
    prune_min_epochs: Mapped[int | None] = mapped_column(Integer)
    prune_reduction: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Dataset(Base):
    """A user's JSONL file, stored content-addressed so that every worker reads the same bytes."""

    __tablename__ = "datasets"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status_created_at", "status", "created_at"),
        Index("ix_runs_experiment_id", "experiment_id"),
        # A sort's walk tests a per-timestep filter's `timesteps >= t` in the index (0007).
        Index("ix_runs_final_val_loss", "final_val_loss", "timesteps"),
        Index("ix_runs_best_val_loss", "best_val_loss", "timesteps"),
        Index("ix_runs_final_metric", "final_metric", "timesteps"),
        Index("ix_runs_best_metric", "best_metric", "timesteps"),
        UniqueConstraint("study_id", "trial_number"),
        # A fused worker's claim looks for queued runs of its group's key (0010).
        Index("ix_runs_status_fusion_key", "status", "fusion_key"),
        Index("ix_runs_group_id", "group_id"),
    )

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.experiment_id"))
    task: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    queue: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    device: Mapped[str | None] = mapped_column(String(32))
    worker: Mapped[str | None] = mapped_column(String(255))
    attempt: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer, server_default=text("3"))
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    epochs_done: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    final_train_loss: Mapped[float | None] = mapped_column(Float)
    final_val_loss: Mapped[float | None] = mapped_column(Float)
    best_train_loss: Mapped[float | None] = mapped_column(Float)
    best_val_loss: Mapped[float | None] = mapped_column(Float)
    final_metric: Mapped[float | None] = mapped_column(Float)
    # The epoch with the lowest finite val L (ties to the earlier), its primary val metric and
    # every val metric by name there; final_metrics: every val metric of the last epoch.
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    best_metric: Mapped[float | None] = mapped_column(Float)
    best_metrics: Mapped[dict[str, float] | None] = mapped_column(JSON)
    final_metrics: Mapped[dict[str, float] | None] = mapped_column(JSON)
    # T, the output timesteps of the run's losses: a per-timestep filter tests it first.
    timesteps: Mapped[int | None] = mapped_column(Integer)
    resumed_from_epoch: Mapped[int | None] = mapped_column(Integer)  # set by a checkpoint resume
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.study_id"))
    trial_number: Mapped[int | None] = mapped_column(Integer)  # 0-based, within its study
    fusion_key: Mapped[str | None] = mapped_column(String(16))  # None: never fused
    group_id: Mapped[str | None] = mapped_column(String(32))  # the fused group of its last attempt


class RunParam(Base):
    """One hyperparameter of a run, typed for filtering: a number or a word."""

    __tablename__ = "run_params"
    __table_args__ = (
        Index("ix_run_params_name_num_value", "name", "num_value"),
        Index("ix_run_params_name_text_value", "name", "text_value"),
    )

    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    num_value: Mapped[float | None] = mapped_column(Float)
    text_value: Mapped[str | None] = mapped_column(String(255))


class RunTag(Base):
    __tablename__ = "run_tags"
    __table_args__ = (Index("ix_run_tags_key_value", "key", "value"),)

    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class Loss(Base):
    """One loss value: L_t at timestep t (1-based), or the total L where timestep is NULL.

    Non-finite values are kept explicitly: value is NULL and value_kind says nan, inf or -inf.
    """

    __tablename__ = "losses"
    __table_args__ = (
        UniqueConstraint("run_id", "attempt", "epoch", "split", "timestep"),
        # NULLs are distinct in a unique key, so the totals need a partial index of their own.
        partial_index(
            "uq_losses_total",
            "run_id",
            "attempt",
            "epoch",
            "split",
            unique=True,
            where="timestep IS NULL",
        ),
    )

    loss_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(8))
    timestep: Mapped[int | None] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Float)
    value_kind: Mapped[str] = mapped_column(String(8), server_default=text("'finite'"))


class Metric(Base):
    """One metric value of an epoch and split: a whole-split metric where timestep is NULL
    (accuracy, token_accuracy, exact_match), or one at output step t (1-based, the numbering
    of the losses' L_t: token_accuracy at step t)."""

    __tablename__ = "metrics"
    __table_args__ = (
        UniqueConstraint("run_id", "attempt", "epoch", "split", "name", "timestep"),
        partial_index(
            "uq_metrics_whole",
            "run_id",
            "attempt",
            "epoch",
            "split",
            "name",
            unique=True,
            where="timestep IS NULL",
        ),
    )

    metric_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(32))
    timestep: Mapped[int | None] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)


class RunValue(Base):
    """A value a sort reads, of an ended run (service/run_values.py): a per-timestep loss (name
    "loss") or a metric (timestep 0 for a whole-split one) of the run's last epoch (at "last"),
    or a val metric of its best epoch (at "best"), from the attempt and epoch given."""

    __tablename__ = "run_values"
    __table_args__ = (Index("ix_run_values_sort", "at", "split", "name", "timestep", "value"),)

    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    at: Mapped[str] = mapped_column(String(4), primary_key=True)
    split: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    timestep: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    attempt: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Float)


class Checkpoint(Base):
    """A run's latest training state (models.checkpoint.TrainingState as bytes), and its best."""

    __tablename__ = "checkpoints"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The state after the run's best epoch (lowest finite val L), kept beside the latest.
    best_attempt: Mapped[int | None] = mapped_column(Integer)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    best_state: Mapped[bytes | None] = mapped_column(LargeBinary)
