"""The insert of a new run with its hyperparameters and tags: the database half of a submit.

On PostgreSQL it is one statement in one round trip (data-modifying CTEs, committed on its
own); elsewhere, and for an experiment's first run, a transaction of a few Core statements.
Round trips, not Python, were most of a submit's time: the ORM's unit of work took nine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    Engine,
    Float,
    String,
    bindparam,
    func,
    insert,
    select,
    true,
)
from sqlalchemy.exc import IntegrityError

from service import tables
from service.fusion_keys import fusion_key
from service.records import utcnow
from service.states import RunStatus

RUN_COLUMNS = (
    "task", "model", "status", "spec", "queue", "priority", "idempotency_key", "max_attempts",
    "attempt", "given_back", "epochs_done", "created_at", "queued_at", "fusion_key",
)  # fmt: skip

# The run takes its experiment id from a subselect by name, so a lookup costs no round trip;
# no row comes back when the experiment does not exist yet.
_RUN_INSERT = (
    insert(tables.runs)
    .from_select(
        ["experiment_id", *RUN_COLUMNS],
        select(
            tables.experiments.c.experiment_id,
            *(bindparam(name, type_=tables.runs.c[name].type) for name in RUN_COLUMNS),
        ).where(tables.experiments.c.name == bindparam("experiment")),
    )
    .returning(tables.runs.c.run_id)
)


def _one_statement_insert() -> Any:
    """PostgreSQL: the run, then its params and tags from arrays joined to the new row."""
    run = _RUN_INSERT.cte("new_run")
    params = (
        func.unnest(
            bindparam("param_names", type_=ARRAY(String)),
            bindparam("param_numbers", type_=ARRAY(Float)),
            bindparam("param_texts", type_=ARRAY(String)),
        )
        .table_valued("name", "num_value", "text_value")
        .render_derived()
    )
    tags = (
        func.unnest(
            bindparam("tag_keys", type_=ARRAY(String)),
            bindparam("tag_values", type_=ARRAY(String)),
        )
        .table_valued("key", "value")
        .render_derived()
    )
    new_params = insert(tables.run_params).from_select(
        ["run_id", "name", "num_value", "text_value"],
        select(run.c.run_id, params.c.name, params.c.num_value, params.c.text_value)
        .select_from(run)
        .join(params, true()),
    )
    new_tags = insert(tables.run_tags).from_select(
        ["run_id", "key", "value"],
        select(run.c.run_id, tags.c.key, tags.c.value).select_from(run).join(tags, true()),
    )
    return select(run.c.run_id).add_cte(new_params.cte("new_params"), new_tags.cte("new_tags"))


_ONE_STATEMENT_INSERT = _one_statement_insert()


def new_run_values(
    spec: Mapping[str, Any],
    *,
    queue: str,
    priority: int,
    max_attempts: int,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """The RUN_COLUMNS values of a run about to be queued."""
    now = utcnow()
    return {
        "task": spec["task"],
        "model": spec["model"],
        "status": RunStatus.QUEUED,
        "spec": dict(spec),
        "queue": queue,
        "priority": priority,
        "idempotency_key": idempotency_key,
        "max_attempts": max_attempts,
        "attempt": 0,
        "given_back": 0,
        "epochs_done": 0,
        "created_at": now,
        "queued_at": now,
        "fusion_key": fusion_key(spec),
    }


def _param_rows(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Typed hyperparameter rows: numbers (bools as 0/1) in num_value, strings in text_value."""
    return [
        {
            "name": name,
            "num_value": float(value) if isinstance(value, (int, float)) else None,
            "text_value": value if isinstance(value, str) else None,
        }
        for name, value in params.items()
        if value is not None
    ]


def insert_run(
    engine: Engine,
    experiment: str,
    run: Mapping[str, Any],
    params: Mapping[str, Any],
    tags: Mapping[str, str],
) -> int:
    """Insert the run (its RUN_COLUMNS values), params and tags atomically; the new run id."""
    values = {**run, "experiment": experiment}
    rows = _param_rows(params)
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            run_id = connection.execution_options(isolation_level="AUTOCOMMIT").scalar(
                _ONE_STATEMENT_INSERT,
                {
                    **values,
                    "param_names": [row["name"] for row in rows],
                    "param_numbers": [row["num_value"] for row in rows],
                    "param_texts": [row["text_value"] for row in rows],
                    "tag_keys": list(tags),
                    "tag_values": list(tags.values()),
                },
            )
        if run_id is not None:
            return run_id
    with engine.begin() as connection:
        run_id = connection.scalar(_RUN_INSERT, values)
        if run_id is None:  # the experiment's first run
            _create_experiment(connection, experiment)
            run_id = connection.execute(_RUN_INSERT, values).scalar_one()
        if rows:
            connection.execute(
                insert(tables.run_params), [{**row, "run_id": run_id} for row in rows]
            )
        if tags:
            connection.execute(
                insert(tables.run_tags),
                [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()],
            )
    return run_id


def insert_runs(
    engine: Engine,
    experiment: str,
    runs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, str]]],
) -> list[int]:
    """Insert a batch of runs, each (RUN_COLUMNS values, params, tags), in one transaction of
    three multi-row statements; their new ids, in order."""
    if not runs:
        return []
    with engine.begin() as connection:
        return add_runs(connection, experiment_id_for(connection, experiment), runs)


def add_runs(
    connection: Connection,
    experiment_id: int,
    runs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, str]]],
) -> list[int]:
    """insert_runs inside the caller's transaction; each run's values may add columns of runs
    beyond RUN_COLUMNS (the same ones for every run of the batch)."""
    run_ids = list(
        connection.execute(
            insert(tables.runs).returning(tables.runs.c.run_id, sort_by_parameter_order=True),
            [{**values, "experiment_id": experiment_id} for values, _, _ in runs],
        ).scalars()
    )
    params = [
        {**row, "run_id": run_id}
        for run_id, (_, run_params, _) in zip(run_ids, runs, strict=True)
        for row in _param_rows(run_params)
    ]
    tags = [
        {"run_id": run_id, "key": key, "value": value}
        for run_id, (_, _, run_tags) in zip(run_ids, runs, strict=True)
        for key, value in run_tags.items()
    ]
    if params:
        connection.execute(insert(tables.run_params), params)
    if tags:
        connection.execute(insert(tables.run_tags), tags)
    return run_ids


def experiment_id_for(connection: Connection, name: str) -> int:
    """The id of experiment `name`, created if it is new."""
    lookup = select(tables.experiments.c.experiment_id).where(tables.experiments.c.name == name)
    found = connection.scalar(lookup)
    if found is None:
        _create_experiment(connection, name)
        found = connection.execute(lookup).scalar_one()
    return found


def _create_experiment(connection: Connection, name: str) -> None:
    try:
        with connection.begin_nested():
            connection.execute(insert(tables.experiments), {"name": name, "created_at": utcnow()})
    except IntegrityError:  # created meanwhile by a concurrent submitter
        pass
