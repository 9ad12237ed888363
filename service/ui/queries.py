"""The two reads the dashboard needs that the store does not offer, on top of service.schema.

- `page_of_run_ids`: a page at any offset. `store.list_runs` has a limit but no offset; the
  ids come from here and the records from `store.get_runs`, so a run's JSON stays the store's.
- `loss_series`: a run's losses as one pair of arrays per (split, timestep). `store.get_losses`
  builds an ORM object and a record per row: for 1,000 epochs x 64 timesteps (130k rows) that
  alone measured 2.9 s, and plain rows 0.2-0.3 s; the database joins each series into two
  strings instead (group_concat / string_agg) and numpy parses them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Engine, String, cast, func, select

from service.db import session_scope
from service.filters import RunFilter, nullable, parse_sort, value_of
from service.schema import Experiment, Loss, Run

Series = tuple[str, int | None, np.ndarray, np.ndarray]


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
        .where(*where.conditions(per_run=True))
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


def _joined(column: Any) -> Any:
    # A NULL value (a non-finite loss) is kept as "nan": skipped, it would shift the series.
    return func.aggregate_strings(func.coalesce(cast(column, String), "nan"), ",")


def loss_series(engine: Engine, run_id: int, attempt: int) -> list[Series]:
    """(split, timestep or None for L, epochs, values) of one attempt; NaN: a non-finite loss.

    Epochs come in no particular order; each value sits at its epoch's position.
    """
    query = (
        select(Loss.split, Loss.timestep, _joined(Loss.epoch), _joined(Loss.value))
        .where(Loss.run_id == run_id, Loss.attempt == attempt)
        .group_by(Loss.split, Loss.timestep)
    )
    with session_scope(engine, read_only=True) as session:
        rows = session.execute(query).all()
    return [
        (split, step, np.array(epochs.split(","), dtype=int), np.array(values.split(","), float))
        for split, step, epochs, values in rows
    ]
