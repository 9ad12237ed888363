"""The two reads the dashboard needs that the store does not offer, on top of service.schema.

- `page_of_run_ids`: a page at any offset. `store.list_runs` has a limit but no offset; the
  ids come from here and the records from `store.get_runs`, so a run's JSON stays the store's.
- `loss_points`: a run's losses as plain tuples. `store.get_losses` builds an ORM object and a
  record per row: for 1,000 epochs x 64 timesteps (130k rows) that alone measured over 1 s.
"""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from service.db import session_scope
from service.filters import RunFilter, nullable, parse_sort, value_of
from service.schema import Experiment, Loss, Run


def page_of_run_ids(
    engine: Engine, where: RunFilter, sort: str, offset: int, limit: int
) -> list[int]:
    """Ids of the matching runs in `sort` order (FIELD[:asc|desc]), runs without a value last,
    then newest first: the order of `runs list`.

    Two statements for a field some runs lack, as in the store: `ORDER BY value IS NULL`
    would defeat the value's index.
    """
    field, descending = parse_sort(sort)
    value = value_of(field)
    order = value.desc() if descending else value.asc()
    query = (
        select(Run.run_id)
        .join(Experiment, Run.experiment_id == Experiment.experiment_id)
        .where(*where.conditions())
    )
    with session_scope(engine, read_only=True) as session:
        if not nullable(field):
            page = query.order_by(order, Run.run_id.desc()).offset(offset).limit(limit)
            return list(session.scalars(page))
        valued = query.where(value.is_not(None))
        ids = list(
            session.scalars(valued.order_by(order, Run.run_id.desc()).offset(offset).limit(limit))
        )
        if len(ids) == limit:
            return ids
        # The page starts among the runs without a value: how far in, only if it starts there.
        start = 0
        if not ids and offset:
            valued_count = session.scalar(select(func.count()).select_from(valued.subquery()))
            start = max(offset - (valued_count or 0), 0)
        unvalued = query.where(value.is_(None)).order_by(Run.run_id.desc())
        return ids + list(session.scalars(unvalued.offset(start).limit(limit - len(ids))))


def loss_points(
    engine: Engine, run_id: int, attempt: int
) -> list[tuple[int, str, int | None, float | None]]:
    """(epoch, split, timestep, value) of one attempt by epoch; None for a non-finite value."""
    query = (
        select(Loss.epoch, Loss.split, Loss.timestep, Loss.value)
        .where(Loss.run_id == run_id, Loss.attempt == attempt)
        .order_by(Loss.epoch)
    )
    with session_scope(engine, read_only=True) as session:
        return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]
