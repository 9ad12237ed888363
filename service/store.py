"""The experiment store: creating runs and reading runs, losses and datasets back.

Each public function opens exactly one transaction. A run's state changes after creation
live in service/lifecycle.py.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, and_, delete, func, insert, select

from service.db import connection_scope
from service.errors import InputError
from service.filters import (
    Field,
    RunFilter,
    joined_value,
    nullable,
    parse_field,
    parse_fields,
    settled_value,
    value_of,
)
from service.records import LossRecord, RunRecord, as_utc, utcnow
from service.states import RunStatus
from service.tables import datasets, experiments, losses, run_tags, runs

# Tag lookups go in chunks: SQLite refuses statements with more than 32,766 parameters.
_CHUNK = 500
SUMMARY_STATS = ("runs", "count", "mean", "std", "min", "max")
_LIVE = tuple(status for status in RunStatus if status not in RunStatus.terminal())


@dataclass(frozen=True)
class NewRun:
    """What `create_run` needs besides the validated spec."""

    experiment: str
    queue: str
    priority: int = 0
    tags: Mapping[str, str] | None = None
    idempotency_key: str | None = None
    max_attempts: int = 3


def _to_record(run: Mapping[str, Any], tags: dict[str, str]) -> RunRecord:
    """The record of a row of `_runs_with_experiment()`: the run's columns and its experiment."""
    from models.spec import applied_params

    # A row written by hand may hold any JSON: its run fails at the claim with the reason, and
    # listings must still show it.
    spec = dict(run["spec"]) if isinstance(run["spec"], dict) else {}
    return RunRecord(
        id=run["run_id"],
        experiment=run["experiment"],
        task=run["task"],
        model=run["model"],
        status=run["status"],
        params=applied_params(spec),
        spec=spec,
        tags=tags,
        queue=run["queue"],
        priority=run["priority"],
        device=run["device"],
        worker=run["worker"],
        attempt=run["attempt"],
        max_attempts=run["max_attempts"],
        epochs_done=run["epochs_done"],
        final_train_loss=run["final_train_loss"],
        final_val_loss=run["final_val_loss"],
        best_train_loss=run["best_train_loss"],
        best_val_loss=run["best_val_loss"],
        final_metric=run["final_metric"],
        error=run["error"],
        traceback=run["traceback"],
        created_at=as_utc(run["created_at"]),
        started_at=as_utc(run["started_at"]),
        finished_at=as_utc(run["finished_at"]),
        resumed_from_epoch=run["resumed_from_epoch"],
        best_epoch=run["best_epoch"],
        best_metric=run["best_metric"],
        best_metrics=_metric_map(run["best_metrics"]),
        final_metrics=_metric_map(run["final_metrics"]),
        trial=run["trial_number"],
        group=run["group_id"],
        given_back=run["given_back"],
    )


def _metric_map(stored: Any) -> dict[str, float]:
    """A run's JSON metric column as {name: value}; {} where it is empty (runs before 0005)."""
    if not isinstance(stored, dict):
        return {}
    return {str(k): float(v) for k, v in stored.items() if isinstance(v, (int, float))}


def _records(connection: Connection, rows: Iterable[Row[Any]]) -> list[RunRecord]:
    found = [row._mapping for row in rows]
    tags: dict[int, dict[str, str]] = {run["run_id"]: {} for run in found}
    ids = list(tags)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        for tag in connection.execute(select(run_tags).where(run_tags.c.run_id.in_(chunk))):
            tags[tag.run_id][tag.key] = tag.value
    return [_to_record(run, tags[run["run_id"]]) for run in found]


def _runs_with_experiment() -> Select:
    return select(runs, experiments.c.name.label("experiment")).join(
        experiments, runs.c.experiment_id == experiments.c.experiment_id
    )


def _filtered(query: Select, where: RunFilter, *, per_run: bool = False) -> Select:
    return query.where(*where.conditions(per_run=per_run))


def _sorted_pages(query: Select, field: Field, descending: bool):  # noqa: ANN202
    """The statements that list runs in `field` order, runs without a value last: pages read
    one after the other, each a list of statements whose rows merge by their last column.

    Two pages instead of one `ORDER BY value IS NULL, value`: that expression defeats the
    index on the value, and `--sort final_val_loss --limit 20` would read every run.
    """
    value = value_of(field)

    def ordered(statement: Select, column: Any) -> Select:
        order = column.desc() if descending else column.asc()
        return statement.order_by(order, runs.c.run_id.desc())

    if not nullable(field):
        yield [ordered(query, value)]
        return
    if field.source in ("loss", "metric"):
        # The ended runs walk run_values' index in value order and stop after `limit`; the runs
        # still queued or training, which it does not hold, are probed one by one. A scalar
        # subquery over every run measured 361-709 ms (`--sort "val_loss_t[3]"`, 100k runs).
        settled, column = settled_value(query.where(runs.c.status.in_(RunStatus.terminal())), field)
        live, probed = joined_value(query.where(runs.c.status.in_(_LIVE)), field, outer=False)
        yield [
            ordered(settled.where(column.is_not(None)).add_columns(column), column),
            ordered(live.where(probed.is_not(None)).add_columns(probed), probed),
        ]
    else:
        yield [ordered(query.where(value.is_not(None)), value)]
    yield [query.where(value.is_(None)).order_by(runs.c.run_id.desc())]


def _page_rows(
    connection: Connection,
    page: list[Select],
    descending: bool,
    limit: int | None,
    **options: Any,
) -> Iterator[Row[Any]]:
    """At most `limit` rows of one page from `_sorted_pages`: a run's columns and experiment
    (and, on a merged page, the value sorted by last)."""
    page = [statement.limit(limit) for statement in page]
    if len(page) == 1:
        yield from connection.execute(page[0].execution_options(**options))
        return
    settled, live = page

    def key(row: Row[Any]) -> tuple[float, int]:
        return (row[-1], row.run_id) if descending else (row[-1], -row.run_id)

    training = connection.execute(live).all()  # few: read first, before the long stream opens
    streams = [connection.execute(settled.execution_options(**options)), training]
    merged = heapq.merge(*streams, key=key, reverse=descending)
    yield from itertools.islice(merged, limit)


def _sorted_rows(
    connection: Connection, query: Select, field: Field, descending: bool, limit: int | None
) -> list[Row[Any]]:
    rows: list[Row[Any]] = []
    for page in _sorted_pages(query, field, descending):
        left = None if limit is None else limit - len(rows)
        if left == 0:
            break
        rows.extend(_page_rows(connection, page, descending, left))
    return rows


def save_dataset(engine: Engine, sha256: str, content: bytes) -> None:
    """Store a user's data file once under its sha256 (a second save is a no-op)."""
    with connection_scope(engine) as connection:
        stored = select(datasets.c.sha256).where(datasets.c.sha256 == sha256)
        if connection.scalar(stored) is None:
            new = {"sha256": sha256, "size": len(content), "content": content}
            connection.execute(insert(datasets), {**new, "created_at": utcnow()})


def load_dataset(engine: Engine, sha256: str) -> bytes:
    with connection_scope(engine, read_only=True) as connection:
        content = connection.scalar(select(datasets.c.content).where(datasets.c.sha256 == sha256))
    if content is None:
        raise KeyError(f"dataset {sha256} is not in the database")
    return content


def create_run(
    engine: Engine, spec: Mapping[str, Any], params: Mapping[str, Any], new: NewRun
) -> RunRecord:
    """Insert a validated spec as a `queued` run with its typed hyperparameters and tags."""
    from service.run_insert import insert_run, new_run_values

    values = new_run_values(
        spec,
        queue=new.queue,
        priority=new.priority,
        max_attempts=new.max_attempts,
        idempotency_key=new.idempotency_key,
    )
    tags = dict(new.tags or {})
    run_id = insert_run(engine, new.experiment, values, params, tags)
    unset = dict.fromkeys(runs.c.keys())
    return _to_record({**unset, **values, "run_id": run_id, "experiment": new.experiment}, tags)


def find_idempotent_run(engine: Engine, key: str, spec: Mapping[str, Any]) -> RunRecord | None:
    """The run submitted earlier under `key`; InputError when it was submitted with another spec."""
    with connection_scope(engine) as connection:
        found = _records(
            connection,
            connection.execute(_runs_with_experiment().where(runs.c.idempotency_key == key)),
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
    with connection_scope(engine) as connection:
        result = connection.execute(
            delete(runs).where(
                runs.c.run_id == run_id, runs.c.status == RunStatus.QUEUED, runs.c.attempt == 0
            )
        )
        return result.rowcount == 1


def get_run(engine: Engine, run_id: int) -> RunRecord | None:
    with connection_scope(engine, read_only=True) as connection:
        found = _records(
            connection, connection.execute(_runs_with_experiment().where(runs.c.run_id == run_id))
        )
    return found[0] if found else None


def group_members(engine: Engine, group: str | None) -> list[int]:
    """The runs whose last attempt trained in fused group `group`, by id; [] for None."""
    if group is None:
        return []
    members = select(runs.c.run_id).where(runs.c.group_id == group).order_by(runs.c.run_id)
    with connection_scope(engine, read_only=True) as connection:
        return list(connection.scalars(members))


def get_runs(engine: Engine, run_ids: Sequence[int]) -> list[RunRecord]:
    """The runs with these ids, in the order given; InputError naming the first missing one."""
    query = _runs_with_experiment().where(runs.c.run_id.in_(run_ids))
    with connection_scope(engine, read_only=True) as connection:
        found = {record.id: record for record in _records(connection, connection.execute(query))}
    missing = [run_id for run_id in run_ids if run_id not in found]
    if missing:
        raise InputError(f"no run with id {missing[0]}")
    return [found[run_id] for run_id in run_ids]


def list_runs(
    engine: Engine,
    *,
    experiment: str | None = None,
    task: str | None = None,
    model: str | None = None,
    status: str | None = None,
    where: str | None = None,
    sort: str = "id",
    descending: bool = True,
    limit: int | None = 100,
) -> list[RunRecord]:
    """Runs matching every filter given, `where` in the --where language, sorted by any field
    that --where accepts (runs without a value last, then newest first)."""
    chosen = RunFilter(experiment, task, model, status, where)
    query = _filtered(_runs_with_experiment(), chosen, per_run=limit is not None)
    field = parse_field(sort, "--sort")
    with connection_scope(engine, read_only=True) as connection:
        return _records(connection, _sorted_rows(connection, query, field, descending, limit))


def iter_runs(
    engine: Engine, where: RunFilter, sort: str = "id", descending: bool = False
) -> Iterator[RunRecord]:
    """Every matching run, streamed in chunks: for exports of any size."""
    query = _filtered(_runs_with_experiment(), where)
    field = parse_field(sort, "--sort")
    with connection_scope(engine, read_only=True) as connection:
        for page in _sorted_pages(query, field, descending):
            rows = _page_rows(connection, page, descending, None, yield_per=_CHUNK)
            while chunk := list(itertools.islice(rows, _CHUNK)):
                yield from _records(connection, chunk)


def tag_keys(engine: Engine, where: RunFilter) -> list[str]:
    """The tag keys that matching runs carry, sorted: the tag columns of an export."""
    matching = _filtered(
        select(runs.c.run_id).join(
            experiments, runs.c.experiment_id == experiments.c.experiment_id
        ),
        where,
    )
    keys = select(run_tags.c.key).where(run_tags.c.run_id.in_(matching)).distinct()
    with connection_scope(engine, read_only=True) as connection:
        return list(connection.scalars(keys.order_by(run_tags.c.key)))


def iter_losses(engine: Engine, where: RunFilter) -> Iterator[tuple[int, LossRecord]]:
    """(run id, loss) for every loss of the matching runs' winning attempts, in index order."""
    loss = losses.c
    query = (
        select(losses)
        .join(runs, and_(runs.c.run_id == loss.run_id, runs.c.attempt == loss.attempt))
        .join(experiments, runs.c.experiment_id == experiments.c.experiment_id)
        .order_by(loss.run_id, loss.attempt, loss.epoch, loss.split, loss.timestep.nulls_last())
    )
    with connection_scope(engine, read_only=True) as connection:
        result = connection.execute(_filtered(query, where).execution_options(yield_per=5_000))
        for row in result:
            yield row.run_id, _loss_record(row)


def summarize_runs(
    engine: Engine, where: RunFilter, group_by: str, metric: str = "final_val_loss"
) -> list[dict[str, Any]]:
    """One dict per group of `group_by` (comma-separated fields): the group's values and
    runs (in the group), count (runs with the metric), mean, std, min, max.

    std is the sample standard deviation (n − 1), None for a group with one value and exactly
    0 when every value is equal. Runs without a value for a group-by field form the group
    whose value is None. Computed in SQL by a stable `var_samp` (registered on SQLite): the
    one-pass E[x²] − E[x]² cancels, and gave std 22.6 for seeds 2000000000, …01 and …03.
    A two-pass window query measured twice as slow on SQLite (100k runs).
    """
    fields = parse_fields(group_by, "--group-by")
    measured = parse_field(metric, "--metric")
    if not measured.numeric:
        raise InputError(f"--metric: {measured.name} is not a number")
    query = select(runs.c.run_id).join(
        experiments, runs.c.experiment_id == experiments.c.experiment_id
    )
    columns = []
    for field in [*fields, measured]:
        query, column = joined_value(query, field)
        columns.append(column)
    labels = [column.label(f"g{i}") for i, column in enumerate(columns[:-1])]
    inner = _filtered(query.with_only_columns(*labels, columns[-1].label("m")), where).subquery()
    groups = [inner.c[f"g{i}"] for i in range(len(fields))]
    value = inner.c.m
    query = select(
        *groups,
        func.count(),
        func.count(value),
        func.avg(value),
        func.var_samp(value),
        func.min(value),
        func.max(value),
    ).group_by(*groups)
    with connection_scope(engine, read_only=True) as connection:
        if engine.dialect.name == "sqlite":
            sqlite = connection.connection.driver_connection
            sqlite.create_aggregate("var_samp", 1, _SampleVariance)
        rows = connection.execute(query).all()
    summary = []
    for row in rows:
        keys, (total, count, mean, variance, low, high) = row[: len(fields)], row[len(fields) :]
        summary.append(
            {
                **{f.name: _plain(f, key) for f, key in zip(fields, keys, strict=True)},
                "runs": total,
                "count": count,
                "mean": None if mean is None else float(mean),
                "std": _std(variance, count, low, high),
                "min": None if low is None else float(low),
                "max": None if high is None else float(high),
            }
        )
    return summary


class _SampleVariance:
    """The sample variance for SQLite, which has no var_samp: sums of the distances from the
    group's first value, which stay small and exact for values close together (seeds near
    2e9). By Samuelson's inequality that value lies within sqrt(n - 1) standard deviations of
    the mean, so the final subtraction loses at most about log10(n) digits. The Python step
    per row costs 150 → 180 ms on `runs summary --group-by model,hidden` over 100k runs."""

    __slots__ = ("count", "first", "total", "squares")

    def __init__(self) -> None:
        self.count, self.first, self.total, self.squares = 0, 0.0, 0.0, 0.0

    def step(self, value: float | None) -> None:
        if value is None:
            return
        if self.count == 0:
            self.first = value
        distance = value - self.first
        self.count += 1
        self.total += distance
        self.squares += distance * distance

    def finalize(self) -> float | None:
        if self.count < 2:
            return None
        return (self.squares - self.total * self.total / self.count) / (self.count - 1)


def _std(variance: Any, count: int, low: Any, high: Any) -> float | None:
    """The sample std from the variance; rounding must not turn equal values into a spread."""
    if count < 2 or variance is None:
        return None
    if low == high:
        return 0.0
    return math.sqrt(max(float(variance), 0.0))


def _plain(field: Field, value: Any) -> Any:
    """A grouped value as JSON wants it: whole numbers of integer fields as ints, times in ISO."""
    if value is None:
        return None
    if field.kind == "integer":
        return int(value)
    if field.kind == "number":
        return float(value)
    if field.kind == "time":
        return as_utc(value).isoformat() if hasattr(value, "isoformat") else str(value)
    return value


def run_statuses(engine: Engine, run_ids: Iterable[int]) -> dict[int, str]:
    ids = list(run_ids)
    with connection_scope(engine, read_only=True) as connection:
        rows = connection.execute(
            select(runs.c.run_id, runs.c.status).where(runs.c.run_id.in_(ids))
        )
        return {run_id: status for run_id, status in rows}


def _loss_record(row: Row[Any]) -> LossRecord:
    return LossRecord(
        epoch=row.epoch,
        split=row.split,
        timestep=row.timestep,
        value=row.value if row.value_kind == "finite" else float(row.value_kind),
    )


def get_losses(
    engine: Engine, run_id: int, *, split: str | None = None, epoch: int | str = "all"
) -> list[LossRecord]:
    """The winning attempt's losses, ordered by epoch, split, timestep (the total last).

    `epoch` is a number, "last" or "all".
    """
    loss = losses.c
    with connection_scope(engine, read_only=True) as connection:
        attempt = connection.scalar(select(runs.c.attempt).where(runs.c.run_id == run_id))
        if attempt is None:
            return []
        query = select(losses).where(loss.run_id == run_id, loss.attempt == attempt)
        if split is not None:
            query = query.where(loss.split == split)
        if epoch == "last":
            last = (
                select(func.max(loss.epoch))
                .where(loss.run_id == run_id, loss.attempt == attempt)
                .scalar_subquery()
            )
            query = query.where(loss.epoch == last)
        elif epoch != "all":
            query = query.where(loss.epoch == int(epoch))
        query = query.order_by(loss.epoch, loss.split, loss.timestep.is_(None), loss.timestep)
        return [_loss_record(row) for row in connection.execute(query)]
