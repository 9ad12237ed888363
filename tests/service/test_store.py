"""Creating and reading runs, against SQLite and PostgreSQL (one suite over both)."""

from __future__ import annotations

import math
import statistics

import pytest
from sqlalchemy import select, update
from support import Split, claim, new_run

from models.spec import spec_from_dict
from service.db import session_scope
from service.errors import InputError
from service.filters import RunFilter
from service.lifecycle import finish_run, record_epoch
from service.loss_rows import insert_losses
from service.schema import Loss, Run, RunStatus
from service.store import (
    NewRun,
    create_run,
    delete_queued_run,
    find_idempotent_run,
    get_losses,
    get_run,
    get_runs,
    iter_losses,
    iter_runs,
    list_runs,
    summarize_runs,
    tag_keys,
)


def test_a_new_run_is_queued_with_its_params_and_tags(engine) -> None:  # noqa: ANN001
    run = new_run(engine, lr=0.05)
    stored = get_run(engine, run.id)
    assert stored.status == RunStatus.QUEUED
    assert stored.params["lr"] == 0.05 and stored.params["task"] == "translation"
    assert stored.tags == {"team": "a"}
    assert stored.experiment == "exp"
    assert stored.to_json()["created_at"].endswith("+00:00")


def test_every_run_of_an_experiment_keeps_its_params_and_tags(engine) -> None:  # noqa: ANN001
    """An experiment's first run creates it; later ones insert in one statement on PostgreSQL."""
    runs = [new_run(engine, lr=lr, hidden=hidden) for lr, hidden in ((0.05, 8), (0.2, 16))]
    spec = spec_from_dict({"task": "binary", "model": "mlp", "dropout": 0.5})
    untagged = create_run(engine, spec.to_dict(), spec.params(), NewRun("exp", "cpu"))
    stored = get_runs(engine, [run.id for run in runs] + [untagged.id])
    assert [(r.params["lr"], r.params["hidden"], r.tags) for r in stored] == [
        (0.05, 8, {"team": "a"}),
        (0.2, 16, {"team": "a"}),
        (0.1, 64, {}),
    ]
    assert {r.experiment for r in stored} == {"exp"}
    assert stored[2].params["dropout"] == 0.5 and stored[2].params["model"] == "mlp"
    assert [r.id for r in list_runs(engine, where="dropout = 0.5")] == [untagged.id]


def test_every_param_that_applies_is_recorded_and_queryable(engine) -> None:  # noqa: ANN001
    digest = "ab" * 32
    on_data = spec_from_dict(
        {"task": "binary", "model": "rnn", "data": digest, "patience": 3, "grad_clip": 0.5}
    )
    built_in = spec_from_dict({"task": "binary", "model": "mlp", "val_fraction": 0.3})
    a, b = (
        create_run(engine, spec.to_dict(), spec.params(), NewRun("exp", "cpu")).id
        for spec in (on_data, built_in)
    )
    params = get_run(engine, a).params
    assert (params["data"], params["patience"], params["grad_clip"], params["cell"]) == (
        digest,
        3,
        0.5,
        "gru",
    )
    assert not {"seq_len", "samples", "activation", "time_limit"} & set(params)
    assert get_run(engine, a).to_json()["params"] == params
    assert "cell" not in get_run(engine, b).params
    for where, expected in (
        (f"data = '{digest}'", [a]),
        ("grad_clip < 1", [a]),
        ("patience = 3", [a]),
        ("not patience = 3", []),  # b has no patience: unknown
        ("val_fraction = 0.3", [b]),
        ("seq_len > 0 and samples = 2000", [b]),
        ("cell = 'gru'", [a]),
        ("cell != 'gru'", []),  # an MLP has no cell
        ("activation = 'tanh'", [b]),
    ):
        assert [r.id for r in list_runs(engine, where=where)] == expected, where
    assert [r.id for r in list_runs(engine, sort="patience", descending=False)] == [a, b]
    by_cell = {g["cell"]: g["runs"] for g in summarize_runs(engine, RunFilter(), "cell", "lr")}
    assert by_cell == {"gru": 1, None: 1}


def test_a_run_whose_stored_spec_is_not_an_object_still_lists(engine) -> None:  # noqa: ANN001
    run = new_run(engine)
    with session_scope(engine) as session:
        session.execute(update(Run).where(Run.run_id == run.id).values(spec=["not", "a", "spec"]))
    (listed,) = list_runs(engine)
    assert (listed.id, listed.spec, listed.params) == (run.id, {}, {})


def test_list_runs_filters_and_sorts(engine) -> None:  # noqa: ANN001
    first = new_run(engine, task="binary", experiment="one")
    second = new_run(engine, task="sentiment", experiment="two")
    assert [r.id for r in list_runs(engine)] == [second.id, first.id]
    assert [r.id for r in list_runs(engine, experiment="one")] == [first.id]
    assert [r.id for r in list_runs(engine, task="sentiment")] == [second.id]
    assert [r.id for r in list_runs(engine, sort="id", descending=False)] == [first.id, second.id]
    with pytest.raises(InputError, match="unknown field 'bogus'"):
        list_runs(engine, sort="bogus")


def test_idempotency_key_returns_the_same_run_or_refuses_other_params(engine) -> None:  # noqa: ANN001
    spec = spec_from_dict({"task": "binary", "model": "mlp"})
    run = create_run(
        engine, spec.to_dict(), spec.params(), NewRun("e", "cpu", idempotency_key="k1")
    )
    assert find_idempotent_run(engine, "k1", spec.to_dict()).id == run.id
    assert find_idempotent_run(engine, "k2", spec.to_dict()) is None
    with pytest.raises(InputError, match="other parameters"):
        find_idempotent_run(engine, "k1", {**spec.to_dict(), "lr": 0.5})


def test_only_an_unclaimed_run_can_be_withdrawn(engine) -> None:  # noqa: ANN001
    withdrawn = new_run(engine)
    assert delete_queued_run(engine, withdrawn.id)
    assert get_run(engine, withdrawn.id) is None
    claimed = new_run(engine)
    claim(engine, claimed.id)
    assert not delete_queued_run(engine, claimed.id)


def _trained(engine, *, lr: float, hidden: int, val: list[float], epochs: int = 2, **more):  # noqa: ANN001, ANN202
    """A run trained `epochs` epochs; the last epoch's val L_t are `val`, its val L their sum."""
    run = new_run(engine, lr=lr, hidden=hidden, **more)
    attempt = claim(engine, run.id)
    for epoch in range(1, epochs + 1):
        scale = epochs / epoch
        record_epoch(
            engine,
            run.id,
            attempt,
            epoch,
            {
                "train": Split(sum(val) * scale / 2, [v * scale / 2 for v in val]),
                "val": Split(sum(val) * scale, [v * scale for v in val]),
            },
        )
    return run.id


@pytest.fixture
def three_runs(engine) -> list[int]:  # noqa: ANN001
    a = _trained(engine, lr=0.1, hidden=16, val=[0.1, 0.3, 0.5])
    b = _trained(engine, lr=0.01, hidden=32, val=[0.2, 0.1, 0.2])
    c = _trained(engine, lr=0.5, hidden=32, val=[0.3, 0.6, float("nan")], experiment="other")
    queued = new_run(engine, lr=0.05, hidden=16).id
    return [a, b, c, queued]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("lr < 0.2", [0, 1, 3]),
        ("lr < 0.2 and hidden = 32", [1]),
        ("lr >= 0.5 or (hidden = 16 and status = 'queued')", [2, 3]),
        ("not lr < 0.2", [2]),
        ("hidden in (16, 64)", [0, 3]),
        ("hidden not in (16, 64)", [1, 2]),
        ("experiment = 'other'", [2]),
        ("experiment != 'other'", [0, 1, 3]),
        ("tag.team = 'a'", [0, 1, 2, 3]),
        ("tag.missing = 'a'", []),
        ("not tag.missing = 'a'", []),  # missing: unknown either way
        ("val_loss_t[2] < 0.35", [0, 1]),
        ("val_loss_t[2] < 0.35 or val_loss_t[3] > 0.4", [0, 1]),
        ("val_loss_t[3] < 1", [0, 1]),  # run 2's t=3 is NaN: it matches no comparison
        ("not val_loss_t[3] < 1", []),  # NaN or no losses: unknown
        ("train_loss_t[1] = 0.05", [0]),
        ("final_val_loss < 0.6", [1]),
        ("not final_val_loss < 0.6", [0]),
        ("epochs_done = 2 and status = 'running'", [0, 1, 2]),
        ("created_at > '2000-01-01' and created_at < '2999-01-01T00:00:00+01:00'", [0, 1, 2, 3]),
        ("model = 'rnn' and task = 'translation' and cell = 'gru'", [0, 1, 2, 3]),
    ],
)
def test_where_selects_runs(engine, three_runs: list[int], where: str, expected) -> None:  # noqa: ANN001
    found = {r.id for r in list_runs(engine, where=where)}
    assert found == {three_runs[i] for i in expected}


def test_sort_by_any_field_puts_missing_values_last(engine, three_runs: list[int]) -> None:  # noqa: ANN001
    a, b, c, queued = three_runs

    def ids(**kwargs) -> list[int]:  # noqa: ANN003
        return [r.id for r in list_runs(engine, **kwargs)]

    # c's final val L is NaN, kept as missing: it sorts with the queued run, newest first.
    assert ids(sort="final_val_loss", descending=False) == [b, a, queued, c]
    assert ids(sort="final_val_loss", descending=True) == [a, b, queued, c]
    assert ids(sort="final_val_loss", descending=False, limit=2) == [b, a]
    assert ids(sort="final_val_loss", descending=False, limit=4, where="lr < 0.2") == [b, a, queued]
    assert ids(sort="val_loss_t[2]", descending=False) == [b, a, c, queued]
    assert ids(sort="val_loss_t[3]", descending=True) == [a, b, queued, c]
    assert ids(sort="lr", descending=False) == [b, queued, a, c]
    assert ids(sort="hidden", descending=True) == [c, b, queued, a]  # ties: newest first
    assert ids(sort="experiment", descending=True)[0] == c
    assert ids(sort="tag.team", descending=False) == [queued, c, b, a]


def test_summary_groups_in_sql(engine, three_runs: list[int]) -> None:  # noqa: ANN001
    groups = summarize_runs(engine, RunFilter(), "hidden")
    by_hidden = {g["hidden"]: g for g in groups}
    assert set(by_hidden) == {16, 32}
    sixteen = by_hidden[16]
    assert (sixteen["runs"], sixteen["count"]) == (2, 1)  # the queued run has no loss yet
    assert sixteen["mean"] == pytest.approx(0.9) and sixteen["std"] is None  # one value
    thirty_two = by_hidden[32]
    # b's final val L is 0.5; c's is NaN (its sum holds a NaN), stored as missing.
    assert (thirty_two["runs"], thirty_two["count"]) == (2, 1)
    by_step = summarize_runs(
        engine, RunFilter(where="status = 'running'"), "model", "val_loss_t[2]"
    )
    [rnn] = by_step
    values = [0.3, 0.1, 0.6]
    mean = sum(values) / 3
    assert rnn["model"] == "rnn" and rnn["count"] == 3
    assert rnn["mean"] == pytest.approx(mean)
    assert rnn["std"] == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in values) / 2))
    assert (rnn["min"], rnn["max"]) == (pytest.approx(0.1), pytest.approx(0.6))
    two = summarize_runs(engine, RunFilter(), "experiment,tag.team,lr", "final_metric")
    assert {(g["experiment"], g["tag.team"], g["lr"]) for g in two} == {
        ("exp", "a", 0.1),
        ("exp", "a", 0.01),
        ("other", "a", 0.5),
        ("exp", "a", 0.05),
    }
    with pytest.raises(InputError, match="--metric: status is not a number"):
        summarize_runs(engine, RunFilter(), "model", "status")


def test_summary_std_is_the_sample_std_computed_stably(engine) -> None:  # noqa: ANN001
    """Seed replicates near 2e9 and a constant column: E[x²] − E[x]² gave 22.6 and 1.9e-9."""
    for seed in (2_000_000_000, 2_000_000_001, 2_000_000_003):
        new_run(engine, seed=seed, lr=0.3)
    new_run(engine, seed=7, experiment="single")
    by_seed = {
        g["experiment"]: g for g in summarize_runs(engine, RunFilter(), "experiment", "seed")
    }
    assert by_seed["exp"]["std"] == pytest.approx(statistics.stdev([0, 1, 3]), rel=1e-9)
    assert by_seed["exp"]["mean"] == pytest.approx(2_000_000_001 + 1 / 3, rel=1e-15)
    assert by_seed["single"]["count"] == 1 and by_seed["single"]["std"] is None
    [constant] = summarize_runs(engine, RunFilter(experiment="exp"), "experiment", "lr")
    assert constant["count"] == 3 and constant["std"] == 0.0


def test_exports_stream_runs_and_the_winning_attempts_losses(engine, three_runs: list[int]) -> None:  # noqa: ANN001
    a, b, c, queued = three_runs
    assert [r.id for r in iter_runs(engine, RunFilter(where="hidden = 32"))] == [b, c]
    assert tag_keys(engine, RunFilter()) == ["team"]
    rows = list(iter_losses(engine, RunFilter(where=f"id = {a}")))
    assert len(rows) == 2 * 2 * 4 and {run_id for run_id, _ in rows} == {a}
    first = [loss for _, loss in rows[:4]]
    assert [(r.epoch, r.split, r.timestep) for r in first] == [
        (1, "train", 1),
        (1, "train", 2),
        (1, "train", 3),
        (1, "train", None),
    ]
    nan = [loss for run_id, loss in iter_losses(engine, RunFilter(where=f"id = {c}"))]
    assert any(math.isnan(r.value) for r in nan)
    assert [r.id for r in get_runs(engine, [c, a])] == [c, a]
    with pytest.raises(InputError, match="no run with id 999999"):
        get_runs(engine, [a, 999999])


def test_losses_are_stored_exactly_with_non_finite_values_flagged(engine) -> None:  # noqa: ANN001
    run = new_run(engine)
    attempt = claim(engine, run.id)
    steps = [0.25, float("inf"), float("-inf"), float("nan"), 1e-300]
    with session_scope(engine) as session:
        insert_losses(session, run.id, attempt, 1, {"val": Split(1.5, steps)})
    with session_scope(engine) as session:
        stored = session.execute(
            select(Loss.timestep, Loss.value, Loss.value_kind)
            .where(Loss.run_id == run.id)
            .order_by(Loss.timestep)
        ).all()
    assert {row.timestep: (row.value, row.value_kind) for row in stored} == {
        1: (0.25, "finite"),
        2: (None, "inf"),
        3: (None, "-inf"),
        4: (None, "nan"),
        5: (1e-300, "finite"),
        None: (1.5, "finite"),
    }


def test_a_large_epoch_goes_through_the_bulk_path(engine) -> None:  # noqa: ANN001
    """Long sequences: hundreds of rows in one epoch (COPY on PostgreSQL)."""
    run = new_run(engine)
    attempt = claim(engine, run.id)
    steps = [i / 1000 for i in range(1, 301)]
    record_epoch(engine, run.id, attempt, 1, {"train": Split(3.0, steps), "val": Split(4, steps)})
    losses = get_losses(engine, run.id)
    assert len(losses) == 2 * 301
    assert [r.value for r in losses if r.split == "val"][:3] == [0.001, 0.002, 0.003]
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), session_scope(engine) as session:
        insert_losses(session, run.id, attempt, 1, {"train": Split(3.0, steps)})
    assert len(get_losses(engine, run.id)) == 2 * 301
    finish_run(engine, run.id, attempt, RunStatus.SUCCEEDED)
