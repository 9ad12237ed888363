"""Reading a run's metric rows back: one run's (`runs metrics`), or every matching run's
(`export --metrics`). Like the losses, only the winning attempt's rows count."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Engine, and_, func, select

from service.db import session_scope
from service.filters import RunFilter
from service.records import MetricRecord
from service.schema import Experiment, Metric, Run

_ORDER = (Metric.epoch, Metric.split, Metric.name, Metric.timestep.is_not(None), Metric.timestep)


def _record(row: Metric) -> MetricRecord:
    return MetricRecord(row.epoch, row.split, row.name, row.timestep, row.value)


def get_metrics(
    engine: Engine, run_id: int, *, split: str | None = None, epoch: int | str = "all"
) -> list[MetricRecord]:
    """The winning attempt's metrics, ordered by epoch, split, name, then the whole-split value
    before the per-timestep ones. `epoch` is a number, "last" or "all"; [] for a run without
    metric rows (one from before revision 0005)."""
    with session_scope(engine, read_only=True) as session:
        attempt = session.scalar(select(Run.attempt).where(Run.run_id == run_id))
        if attempt is None:
            return []
        query = select(Metric).where(Metric.run_id == run_id, Metric.attempt == attempt)
        if split is not None:
            query = query.where(Metric.split == split)
        if epoch == "last":
            last = (
                select(func.max(Metric.epoch))
                .where(Metric.run_id == run_id, Metric.attempt == attempt)
                .scalar_subquery()
            )
            query = query.where(Metric.epoch == last)
        elif epoch != "all":
            query = query.where(Metric.epoch == int(epoch))
        return [_record(row) for row in session.scalars(query.order_by(*_ORDER))]


def iter_metrics(engine: Engine, where: RunFilter) -> Iterator[tuple[int, MetricRecord]]:
    """(run id, metric) for every metric of the matching runs' winning attempts."""
    query = (
        select(Metric)
        .join(Run, and_(Run.run_id == Metric.run_id, Run.attempt == Metric.attempt))
        .join(Experiment, Run.experiment_id == Experiment.experiment_id)
        .where(*where.conditions())
        .order_by(Metric.run_id, *_ORDER)
    )
    with session_scope(engine, read_only=True) as session:
        for row in session.scalars(query.execution_options(yield_per=5_000)):
            yield row.run_id, _record(row)
