"""The experiment store: creating runs and reading runs, losses and datasets back.

Each public function opens exactly one transaction. A run's state changes after creation
live in service/lifecycle.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db import session_scope
from service.errors import InputError
from service.records import LossRecord, RunRecord, as_utc, utcnow
from service.schema import Dataset, Experiment, Loss, Run, RunParam, RunStatus, RunTag

RUN_SORT_FIELDS = (
    "id",
    "created_at",
    "started_at",
    "finished_at",
    "status",
    "task",
    "model",
    "epochs_done",
    "final_train_loss",
    "final_val_loss",
    "best_train_loss",
    "best_val_loss",
    "final_metric",
)


@dataclass(frozen=True)
class NewRun:
    """What `create_run` needs besides the validated spec."""

    experiment: str
    queue: str
    priority: int = 0
    tags: Mapping[str, str] | None = None
    idempotency_key: str | None = None
    max_attempts: int = 3


def _experiment_id(session: Session, name: str) -> int:
    found = session.scalar(select(Experiment.experiment_id).where(Experiment.name == name))
    if found is not None:
        return found
    try:
        with session.begin_nested():
            experiment = Experiment(name=name, created_at=utcnow())
            session.add(experiment)
        return experiment.experiment_id
    except IntegrityError:  # created meanwhile by a concurrent submitter
        return session.scalar(select(Experiment.experiment_id).where(Experiment.name == name))


def _to_record(run: Run, experiment: str, tags: dict[str, str]) -> RunRecord:
    from models.spec import PARAM_NAMES

    return RunRecord(
        id=run.run_id,
        experiment=experiment,
        task=run.task,
        model=run.model,
        status=run.status,
        params={name: run.spec.get(name) for name in PARAM_NAMES},
        spec=dict(run.spec),
        tags=tags,
        queue=run.queue,
        priority=run.priority,
        device=run.device,
        worker=run.worker,
        attempt=run.attempt,
        max_attempts=run.max_attempts,
        epochs_done=run.epochs_done,
        final_train_loss=run.final_train_loss,
        final_val_loss=run.final_val_loss,
        best_train_loss=run.best_train_loss,
        best_val_loss=run.best_val_loss,
        final_metric=run.final_metric,
        error=run.error,
        traceback=run.traceback,
        created_at=as_utc(run.created_at),
        started_at=as_utc(run.started_at),
        finished_at=as_utc(run.finished_at),
    )


def _records(session: Session, rows: Iterable[tuple[Run, str]]) -> list[RunRecord]:
    rows = list(rows)
    tags: dict[int, dict[str, str]] = {run.run_id: {} for run, _ in rows}
    if tags:
        for tag in session.scalars(select(RunTag).where(RunTag.run_id.in_(tags))):
            tags[tag.run_id][tag.key] = tag.value
    return [_to_record(run, name, tags[run.run_id]) for run, name in rows]


def _runs_with_experiment():  # noqa: ANN202 - a Select, typed by SQLAlchemy
    return select(Run, Experiment.name).join(
        Experiment, Run.experiment_id == Experiment.experiment_id
    )


def save_dataset(engine: Engine, sha256: str, content: bytes) -> None:
    """Store a user's data file once under its sha256 (a second save is a no-op)."""
    with session_scope(engine) as session:
        if session.get(Dataset, sha256) is None:
            session.add(
                Dataset(sha256=sha256, size=len(content), content=content, created_at=utcnow())
            )


def load_dataset(engine: Engine, sha256: str) -> bytes:
    with session_scope(engine) as session:
        content = session.scalar(select(Dataset.content).where(Dataset.sha256 == sha256))
    if content is None:
        raise KeyError(f"dataset {sha256} is not in the database")
    return content


def create_run(
    engine: Engine, spec: Mapping[str, Any], params: Mapping[str, Any], new: NewRun
) -> RunRecord:
    """Insert a validated spec as a `queued` run with its typed hyperparameters and tags."""
    now = utcnow()
    with session_scope(engine) as session:
        run = Run(
            experiment_id=_experiment_id(session, new.experiment),
            task=spec["task"],
            model=spec["model"],
            status=RunStatus.QUEUED,
            spec=dict(spec),
            queue=new.queue,
            priority=new.priority,
            idempotency_key=new.idempotency_key,
            max_attempts=new.max_attempts,
            attempt=0,
            epochs_done=0,
            created_at=now,
            queued_at=now,
        )
        session.add(run)
        session.flush()
        session.add_all(
            RunParam(
                run_id=run.run_id,
                name=name,
                num_value=float(value) if isinstance(value, (int, float)) else None,
                text_value=value if isinstance(value, str) else None,
            )
            for name, value in params.items()
            if value is not None
        )
        session.add_all(
            RunTag(run_id=run.run_id, key=key, value=value)
            for key, value in (new.tags or {}).items()
        )
        session.flush()
        return _to_record(run, new.experiment, dict(new.tags or {}))


def find_idempotent_run(engine: Engine, key: str, spec: Mapping[str, Any]) -> RunRecord | None:
    """The run submitted earlier under `key`; InputError when it was submitted with another spec."""
    with session_scope(engine) as session:
        found = _records(
            session, session.execute(_runs_with_experiment().where(Run.idempotency_key == key))
        )
    if not found:
        return None
    if found[0].spec != dict(spec):
        raise InputError(
            f"idempotency key {key!r} already names run {found[0].id} with other parameters"
        )
    return found[0]


def delete_queued_run(engine: Engine, run_id: int) -> bool:
    """Remove a run that never reached the broker; refuses once a worker has claimed it."""
    with session_scope(engine) as session:
        result = session.execute(
            delete(Run).where(
                Run.run_id == run_id, Run.status == RunStatus.QUEUED, Run.attempt == 0
            )
        )
        return result.rowcount == 1


def get_run(engine: Engine, run_id: int) -> RunRecord | None:
    with session_scope(engine) as session:
        found = _records(
            session, session.execute(_runs_with_experiment().where(Run.run_id == run_id))
        )
    return found[0] if found else None


def list_runs(
    engine: Engine,
    *,
    experiment: str | None = None,
    task: str | None = None,
    model: str | None = None,
    status: str | None = None,
    sort: str = "id",
    descending: bool = True,
    limit: int | None = 100,
) -> list[RunRecord]:
    if sort not in RUN_SORT_FIELDS:
        raise ValueError(f"cannot sort by {sort!r}; choose one of {', '.join(RUN_SORT_FIELDS)}")
    query = _runs_with_experiment()
    for column, wanted in (
        (Experiment.name, experiment),
        (Run.task, task),
        (Run.model, model),
        (Run.status, status),
    ):
        if wanted is not None:
            query = query.where(column == wanted)
    column = Run.run_id if sort == "id" else getattr(Run, sort)
    order = column.desc() if descending else column.asc()
    # Runs without a value sort last either way, as users expect of an unfinished run.
    query = query.order_by(column.is_(None), order, Run.run_id.desc()).limit(limit)
    with session_scope(engine) as session:
        return _records(session, session.execute(query))


def run_statuses(engine: Engine, run_ids: Iterable[int]) -> dict[int, str]:
    ids = list(run_ids)
    with session_scope(engine) as session:
        rows = session.execute(select(Run.run_id, Run.status).where(Run.run_id.in_(ids)))
        return {run_id: status for run_id, status in rows}


def get_losses(
    engine: Engine, run_id: int, *, split: str | None = None, epoch: int | str = "all"
) -> list[LossRecord]:
    """The winning attempt's losses, ordered by epoch, split, timestep (the total last).

    `epoch` is a number, "last" or "all".
    """
    with session_scope(engine) as session:
        attempt = session.scalar(select(Run.attempt).where(Run.run_id == run_id))
        if attempt is None:
            return []
        query = select(Loss).where(Loss.run_id == run_id, Loss.attempt == attempt)
        if split is not None:
            query = query.where(Loss.split == split)
        if epoch == "last":
            last = (
                select(func.max(Loss.epoch))
                .where(Loss.run_id == run_id, Loss.attempt == attempt)
                .scalar_subquery()
            )
            query = query.where(Loss.epoch == last)
        elif epoch != "all":
            query = query.where(Loss.epoch == int(epoch))
        query = query.order_by(Loss.epoch, Loss.split, Loss.timestep.is_(None), Loss.timestep)
        return [
            LossRecord(
                epoch=row.epoch,
                split=row.split,
                timestep=row.timestep,
                value=row.value if row.value_kind == "finite" else float(row.value_kind),
            )
            for row in session.scalars(query)
        ]
