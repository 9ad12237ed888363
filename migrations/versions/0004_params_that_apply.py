"""Record every hyperparameter that applies to a run, and none that does not

Runs recorded before this revision lack data, val_data, val_fraction, grad_clip, patience,
time_limit, prune and prune_warmup in run_params, and carry cell for MLPs, activation for RNNs
and seq_len and samples for runs on --data. Both are rebuilt from each run's stored spec.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copies of the tables and of models.spec's rule at this revision.
_metadata = sa.MetaData()
runs = sa.Table(
    "runs",
    _metadata,
    sa.Column("run_id", sa.Integer, primary_key=True),
    sa.Column("model", sa.String(32)),
    sa.Column("spec", sa.JSON),
)
run_params = sa.Table(
    "run_params",
    _metadata,
    sa.Column("run_id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("num_value", sa.Float),
    sa.Column("text_value", sa.String(255)),
)
ADDED = (
    "data", "val_data", "val_fraction", "grad_clip", "patience", "time_limit", "prune",
    "prune_warmup",
)  # fmt: skip
MODEL_ONLY = {"cell": "rnn", "activation": "mlp"}
BUILT_IN_DATA_ONLY = ("seq_len", "samples")
_APPLIES: dict[str, Callable[[dict], bool]] = {
    "seq_len": lambda spec: spec.get("data") is None,
    "samples": lambda spec: spec.get("data") is None,
    "val_fraction": lambda spec: spec.get("val_data") is None,
    "prune_warmup": lambda spec: spec.get("prune") is not None,
}
_CHUNK = 5_000


def _specs() -> Iterator[list[tuple[int, dict]]]:
    """Every run's spec that is an object, in chunks of run ids."""
    connection = op.get_bind()
    last = 0
    while True:
        rows = connection.execute(
            sa.select(runs.c.run_id, runs.c.spec)
            .where(runs.c.run_id > last)
            .order_by(runs.c.run_id)
            .limit(_CHUNK)
        ).all()
        if not rows:
            return
        last = rows[-1][0]
        yield [(run_id, spec) for run_id, spec in rows if isinstance(spec, dict)]


def _row(run_id: int, name: str, value: Any) -> dict[str, Any] | None:
    if isinstance(value, (int, float)):
        return {"run_id": run_id, "name": name, "num_value": float(value), "text_value": None}
    if isinstance(value, str):
        return {"run_id": run_id, "name": name, "num_value": None, "text_value": value}
    return None


def _insert(names: tuple[str, ...], applies: Callable[[str, dict], bool]) -> None:
    """Insert the params `names` of every run where `applies(name, spec)` and it is set."""
    for chunk in _specs():
        rows = [
            _row(run_id, name, spec[name])
            for run_id, spec in chunk
            for name in names
            if spec.get(name) is not None and applies(name, spec)
        ]
        rows = [row for row in rows if row is not None]
        if rows:
            op.get_bind().execute(run_params.insert(), rows)


def _delete_from_other_models(name: str) -> None:
    """Delete param `name` (cell or activation) of the runs of the model that lacks it."""
    others = sa.select(runs.c.run_id).where(runs.c.model != MODEL_ONLY[name])
    op.execute(
        run_params.delete().where(run_params.c.name == name, run_params.c.run_id.in_(others))
    )


def _on_data_runs() -> list[int]:
    return [run_id for chunk in _specs() for run_id, spec in chunk if spec.get("data")]


def upgrade() -> None:
    _insert(ADDED, lambda name, spec: _APPLIES.get(name, bool)(spec))
    for name in MODEL_ONLY:
        _delete_from_other_models(name)
    data_runs = _on_data_runs()
    for start in range(0, len(data_runs), _CHUNK):
        op.execute(
            run_params.delete().where(
                run_params.c.name.in_(BUILT_IN_DATA_ONLY),
                run_params.c.run_id.in_(data_runs[start : start + _CHUNK]),
            )
        )


def downgrade() -> None:
    op.execute(run_params.delete().where(run_params.c.name.in_(ADDED)))
    # Back what upgrade removed, from the spec: a spec that is not an object cannot give it.
    _insert(
        (*MODEL_ONLY, *BUILT_IN_DATA_ONLY),
        lambda name, spec: (
            spec.get("data") is not None
            if name in BUILT_IN_DATA_ONLY
            else spec.get("model") != MODEL_ONLY[name]
        ),
    )
