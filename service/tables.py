"""The tables, in SQLAlchemy Core: experiments, studies, runs with their hyperparameters and
tags, losses, metrics, sort values, checkpoints, datasets.

Core rather than the ORM so that a read command (`expq runs list`) builds and runs its
queries without importing the ORM: service/schema.py maps its classes onto these tables for
the code that writes. The Alembic revisions in migrations/ create exactly this schema; a test
compares the two.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateIndex

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


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


def _when() -> DateTime:
    return DateTime(timezone=True)


def _run_key() -> Column[int]:
    """A row's run, as the first part of its primary key: gone with its run."""
    return Column("run_id", ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True)


def _epoch_row(key: str) -> list[Column[Any]]:
    """The first columns of a value recorded for an epoch and split of a run's attempt."""
    return [
        Column(key, BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("run_id", ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("epoch", Integer, nullable=False),
        Column("split", String(8), nullable=False),
    ]


experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", _when(), nullable=False),
)

# An adaptive search: the sweep's space, its sampler and objective, and how far it got. Its
# trials are runs (runs.study_id, runs.trial_number); the sampler's state is rebuilt from them
# whenever a trial is added, so no process keeps the study in memory.
studies = Table(
    "studies",
    metadata,
    Column("study_id", Integer, primary_key=True),
    Column("experiment_id", ForeignKey("experiments.experiment_id"), nullable=False, unique=True),
    Column("search", String(16), nullable=False),
    Column("objective", String(64), nullable=False),
    Column("direction", String(8), nullable=False),  # minimize or maximize
    Column("trials", Integer, nullable=False),
    Column("parallel", Integer, nullable=False),
    Column("seed", Integer, nullable=False),
    # {"ranges": [{name, low, high, log, integer}], "choices": {name: [values as typed]}}
    Column("space", JSON, nullable=False),
    Column("base_spec", JSON, nullable=False),  # the options every trial shares
    Column("queue", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("pruner", String(16)),
    Column("prune_min_epochs", Integer),
    Column("prune_reduction", Integer),
    Column("state", String(16), nullable=False),
    Column("created_at", _when(), nullable=False),
    Column("finished_at", _when()),
)

# A user's JSONL file, stored content-addressed so that every worker reads the same bytes.
datasets = Table(
    "datasets",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("created_at", _when(), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", Integer, primary_key=True),
    Column("experiment_id", ForeignKey("experiments.experiment_id"), nullable=False),
    Column("task", String(32), nullable=False),
    Column("model", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("queue", String(16), nullable=False),
    Column("priority", Integer, nullable=False, server_default=text("0")),
    Column("idempotency_key", String(200), unique=True),
    Column("device", String(32)),
    Column("worker", String(255)),
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("max_attempts", Integer, nullable=False, server_default=text("3")),
    # Attempts a worker's shutdown gave back: they do not count toward max_attempts (0011).
    Column("given_back", Integer, nullable=False, server_default=text("0")),
    Column("lease_owner", String(255)),
    Column("lease_expires_at", _when()),
    Column("epochs_done", Integer, nullable=False, server_default=text("0")),
    Column("final_train_loss", Float),
    Column("final_val_loss", Float),
    Column("best_train_loss", Float),
    Column("best_val_loss", Float),
    Column("final_metric", Float),
    # The epoch with the lowest finite val L (ties to the earlier), its primary val metric and
    # every val metric by name there; final_metrics: every val metric of the last epoch.
    Column("best_epoch", Integer),
    Column("best_metric", Float),
    Column("best_metrics", JSON),
    Column("final_metrics", JSON),
    # T, the output timesteps of the run's losses: a per-timestep filter tests it first.
    Column("timesteps", Integer),
    Column("resumed_from_epoch", Integer),  # set by a checkpoint resume
    Column("error", Text),
    Column("traceback", Text),
    Column("created_at", _when(), nullable=False),
    Column("queued_at", _when(), nullable=False),
    Column("started_at", _when()),
    Column("finished_at", _when()),
    Column("study_id", ForeignKey("studies.study_id")),
    Column("trial_number", Integer),  # 0-based, within its study
    Column("fusion_key", String(16)),  # None: never fused
    Column("group_id", String(32)),  # the fused group of its last attempt
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

# One hyperparameter of a run, typed for filtering: a number or a word.
run_params = Table(
    "run_params",
    metadata,
    _run_key(),
    Column("name", String(64), primary_key=True),
    Column("num_value", Float),
    Column("text_value", String(255)),
    Index("ix_run_params_name_num_value", "name", "num_value"),
    Index("ix_run_params_name_text_value", "name", "text_value"),
)

run_tags = Table(
    "run_tags",
    metadata,
    _run_key(),
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
    Index("ix_run_tags_key_value", "key", "value"),
)

# One loss value: L_t at timestep t (1-based), or the total L where timestep is NULL.
# Non-finite values are kept explicitly: value is NULL and value_kind says nan, inf or -inf.
losses = Table(
    "losses",
    metadata,
    *_epoch_row("loss_id"),
    Column("timestep", Integer),
    Column("value", Float),
    Column("value_kind", String(8), nullable=False, server_default=text("'finite'")),
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

# One metric value of an epoch and split: a whole-split metric where timestep is NULL
# (accuracy, token_accuracy, exact_match), or one at output step t (1-based, the numbering of
# the losses' L_t: token_accuracy at step t).
metrics = Table(
    "metrics",
    metadata,
    *_epoch_row("metric_id"),
    Column("name", String(32), nullable=False),
    Column("timestep", Integer),
    Column("value", Float, nullable=False),
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

# A value a sort reads, of an ended run (service/run_values.py): a per-timestep loss (name
# "loss") or a metric (timestep 0 for a whole-split one) of the run's last epoch (at "last"),
# or a val metric of its best epoch (at "best"), from the attempt and epoch given.
LOSS = "loss"  # the name that a per-timestep loss L_t goes by among run_values' metrics
WHOLE_SPLIT = 0  # the timestep of a whole-split metric there: a key column cannot be NULL

run_values = Table(
    "run_values",
    metadata,
    _run_key(),
    Column("at", String(4), primary_key=True),
    Column("split", String(8), primary_key=True),
    Column("name", String(32), primary_key=True),
    Column("timestep", Integer, primary_key=True, autoincrement=False),
    Column("attempt", Integer, nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("value", Float),
    Index("ix_run_values_sort", "at", "split", "name", "timestep", "value"),
)

# A run's latest training state (models.checkpoint.TrainingState as bytes), and its best: the
# state after the run's best epoch (lowest finite val L), kept beside the latest.
checkpoints = Table(
    "checkpoints",
    metadata,
    _run_key(),
    Column("attempt", Integer, nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("state", LargeBinary, nullable=False),
    Column("created_at", _when(), nullable=False),
    Column("best_attempt", Integer),
    Column("best_epoch", Integer),
    Column("best_state", LargeBinary),
)
