"""Revision 0004 rebuilds the params of runs recorded before it from their stored specs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select, update
from support import old_run

from models.spec import applied_params, spec_from_dict
from service.db import downgrade, make_engine, session_scope, upgrade
from service.schema import Run, RunParam
from service.store import get_run, list_runs

# What every run recorded up to revision 0003, applicable or not.
OLD_NAMES = (
    "task", "model", "cell", "hidden", "layers", "activation", "dropout", "lr", "momentum",
    "weight_decay", "epochs", "batch_size", "loss", "seq_len", "samples", "seed", "device",
)  # fmt: skip


def _submitted_before(engine: Engine, raw: dict[str, Any]) -> int:
    spec = spec_from_dict(raw)
    return old_run(engine, raw, {name: getattr(spec, name) for name in OLD_NAMES}, "old")


def _stored(engine: Engine) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    with session_scope(engine, read_only=True) as session:
        for row in session.scalars(select(RunParam)):
            value = row.text_value if row.num_value is None else row.num_value
            found.setdefault(row.run_id, {})[row.name] = value
    return found


# Recorded since a later revision: runs recorded before it lack them.
LATER_NAMES = ("data_seed",)


def _typed(params: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v if isinstance(v, str) else float(v) for k, v in params.items() if k not in LATER_NAMES
    }


def test_old_runs_get_the_params_that_apply_and_downgrade_restores_them(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine, "0003")
    digest = "cd" * 32
    mlp = _submitted_before(engine, {"task": "binary", "model": "mlp"})
    on_data = _submitted_before(
        engine,
        {"task": "binary", "model": "rnn", "data": digest, "val_data": "ef" * 32, "patience": 2},
    )
    odd = _submitted_before(engine, {"task": "binary", "model": "rnn"})
    with session_scope(engine) as session:
        session.execute(update(Run).where(Run.run_id == odd).values(spec=["not", "a", "spec"]))
    before = _stored(engine)
    assert "cell" in before[mlp] and "seq_len" in before[on_data] and "data" not in before[on_data]

    upgrade(engine)
    after = _stored(engine)
    for run_id in (mlp, on_data):
        assert after[run_id] == _typed(applied_params(get_run(engine, run_id).spec))
    assert after[on_data]["data"] == digest and after[on_data]["patience"] == 2
    # A spec that is not an object keeps its rows, less what its model rules out.
    assert after[odd] == {k: v for k, v in before[odd].items() if k != "activation"}
    assert [r.id for r in list_runs(engine, where=f"data = '{digest}'")] == [on_data]
    assert [r.id for r in list_runs(engine, where="grad_clip = 1")] == [on_data, mlp]
    assert [r.id for r in list_runs(engine, where="not cell = 'lstm'")] == [odd, on_data]

    downgrade(engine, "0003")
    assert _stored(engine) == {**before, odd: after[odd]}
