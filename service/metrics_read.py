"""Reading a run's metric rows back: one run's (`runs metrics`), or every matching run's
(`export --metrics`). Like the losses, only the winning attempt's rows count."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, Row, and_, func, select

from service.db import connection_scope
from service.filters import RunFilter
from service.records import MetricRecord
from service.tables import experiments, metrics, runs

_METRIC = metrics.c
_ORDER = (
    _METRIC.epoch,
    _METRIC.split,
    _METRIC.name,
    _METRIC.timestep.is_not(None),
    _METRIC.timestep,
)


def _record(row: Row[Any]) -> MetricRecord:
    return MetricRecord(row.epoch, row.split, row.name, row.timestep, row.value)


def get_metrics(
    engine: Engine, run_id: int, *, split: str | None = None, epoch: int | str = "all"
) -> list[MetricRecord]:
    """The winning attempt's metrics, ordered by epoch, split, name, then the whole-split value
    before the per-timestep ones. `epoch` is a number, "last" or "all"; [] for a run without
    metric rows (one from before revision 0005)."""
    with connection_scope(engine, read_only=True) as connection:
        attempt = connection.scalar(select(runs.c.attempt).where(runs.c.run_id == run_id))
        if attempt is None:
            return []
        query = select(metrics).where(_METRIC.run_id == run_id, _METRIC.attempt == attempt)
        if split is not None:
            query = query.where(_METRIC.split == split)
        if epoch == "last":
            last = (
                select(func.max(_METRIC.epoch))
                .where(_METRIC.run_id == run_id, _METRIC.attempt == attempt)
                .scalar_subquery()
            )
            query = query.where(_METRIC.epoch == last)
        elif epoch != "all":
            query = query.where(_METRIC.epoch == int(epoch))
        return [_record(row) for row in connection.execute(query.order_by(*_ORDER))]


def iter_metrics(engine: Engine, where: RunFilter) -> Iterator[tuple[int, MetricRecord]]:
    """(run id, metric) for every metric of the matching runs' winning attempts."""
    query = (
        select(metrics)
        .join(runs, and_(runs.c.run_id == _METRIC.run_id, runs.c.attempt == _METRIC.attempt))
        .join(experiments, runs.c.experiment_id == experiments.c.experiment_id)
        .where(*where.conditions())
        .order_by(_METRIC.run_id, *_ORDER)
    )
    with connection_scope(engine, read_only=True) as connection:
        for row in connection.execute(query.execution_options(yield_per=5_000)):
            yield row.run_id, _record(row)
