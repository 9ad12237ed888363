"""Reading metrics back: the rows of a run, the run's best epoch and metrics, the metric fields
of --where / --sort / --metric, exports, and runs from before revision 0005.

The rows and columns are written by tests/metric_support.py, as the writer's contract says.
"""

from __future__ import annotations

import pytest
from metric_support import sequence, write_metrics
from sqlalchemy import delete, insert, text, update
from support import Split, claim, new_run

from service.db import make_engine, session_scope, upgrade
from service.errors import InputError
from service.filters import RunFilter, parse_where
from service.lifecycle import record_epoch
from service.metrics_read import get_metrics, iter_metrics
from service.schema import Metric, Run
from service.store import get_run, list_runs, summarize_runs


@pytest.fixture
def runs(engine) -> dict[str, int]:  # noqa: ANN001
    """peaked: best at epoch 2 of 3 (overfits after); solved: exact match 0.95 at its last
    epoch; label: a binary run (accuracy only); old: trained before metrics were recorded."""
    peaked = new_run(engine, lr=0.1).id
    attempt = claim(engine, peaked)
    write_metrics(
        engine,
        peaked,
        attempt,
        {
            1: {"train": sequence(0.5, 0.1, [0.6, 0.4]), "val": sequence(0.5, 0.1, [0.6, 0.4])},
            2: {"train": sequence(0.8, 0.5, [0.9, 0.7]), "val": sequence(0.7, 0.4, [0.8, 0.6])},
            3: {"train": sequence(0.9, 0.8, [1.0, 0.8]), "val": sequence(0.6, 0.3, [0.7, 0.5])},
        },
        [2.0, 1.0, 1.5],
    )
    solved = new_run(engine, lr=0.2).id
    attempt = claim(engine, solved)
    write_metrics(
        engine,
        solved,
        attempt,
        {
            1: {"train": sequence(0.8, 0.6, [0.9, 0.7]), "val": sequence(0.8, 0.5, [0.9, 0.7])},
            2: {"train": sequence(1.0, 1.0, [1.0, 1.0]), "val": sequence(0.99, 0.95, [1, 0.98])},
        },
        [1.0, 0.5],
    )
    label = new_run(engine, task="binary", lr=0.3).id
    attempt = claim(engine, label)
    write_metrics(
        engine,
        label,
        attempt,
        {
            1: {"train": {"accuracy": 0.7}, "val": {"accuracy": 0.65}},
            2: {"train": {"accuracy": 0.9}, "val": {"accuracy": 0.85}},
        },
        [0.8, 0.4],
    )
    old = new_run(engine, lr=0.4).id
    attempt = claim(engine, old)
    record_epoch(engine, old, attempt, 1, {"train": Split(1.0), "val": Split(1.0)})
    with session_scope(engine) as session:  # as a run recorded before revision 0005 left it
        session.execute(delete(Metric).where(Metric.run_id == old))
        session.execute(
            update(Run)
            .where(Run.run_id == old)
            .values(best_epoch=None, best_metric=None, best_metrics=None, final_metrics=None)
        )
    return {"peaked": peaked, "solved": solved, "label": label, "old": old}


def test_a_runs_metrics_come_back_in_order_and_by_split_and_epoch(engine, runs) -> None:  # noqa: ANN001
    found = get_metrics(engine, runs["peaked"])
    assert len(found) == 3 * 2 * 4
    assert [(m.epoch, m.split, m.name, m.timestep) for m in found[:4]] == [
        (1, "train", "exact_match", None),
        (1, "train", "token_accuracy", None),
        (1, "train", "token_accuracy", 1),
        (1, "train", "token_accuracy", 2),
    ]
    last_val = get_metrics(engine, runs["peaked"], split="val", epoch="last")
    assert [(m.epoch, m.name, m.timestep, m.value) for m in last_val] == [
        (3, "exact_match", None, 0.3),
        (3, "token_accuracy", None, 0.6),
        (3, "token_accuracy", 1, 0.7),
        (3, "token_accuracy", 2, 0.5),
    ]
    assert {m.epoch for m in get_metrics(engine, runs["peaked"], epoch=2)} == {2}
    assert found[0].to_json() == {
        "epoch": 1,
        "split": "train",
        "name": "exact_match",
        "timestep": None,
        "value": 0.1,
    }
    assert get_metrics(engine, runs["old"]) == []
    assert get_metrics(engine, 999_999) == []


def test_only_the_winning_attempts_metrics_count(engine, runs) -> None:  # noqa: ANN001
    with session_scope(engine) as session:
        session.execute(
            insert(Metric),
            [
                {"run_id": runs["label"], "attempt": 99, "epoch": 1, "split": "val"}
                | {"name": "accuracy", "timestep": None, "value": 0.01}
            ],  # fmt: skip
        )
    assert 0.01 not in [m.value for m in get_metrics(engine, runs["label"])]
    exported = [(run_id, m.value) for run_id, m in iter_metrics(engine, RunFilter())]
    assert (runs["label"], 0.01) not in exported
    assert {run_id for run_id, _ in exported} == {runs["peaked"], runs["solved"], runs["label"]}
    assert len(exported) == 24 + 16 + 4


def test_the_run_carries_its_best_epoch_and_metrics(engine, runs) -> None:  # noqa: ANN001
    peaked = get_run(engine, runs["peaked"]).to_json()
    assert (peaked["best_epoch"], peaked["best_metric"], peaked["final_metric"]) == (2, 0.7, 0.6)
    assert peaked["best_metrics"] == {"token_accuracy": 0.7, "exact_match": 0.4}
    assert peaked["final_metrics"] == {"token_accuracy": 0.6, "exact_match": 0.3}
    old = get_run(engine, runs["old"]).to_json()
    assert (old["best_epoch"], old["best_metric"]) == (None, None)
    assert (old["best_metrics"], old["final_metrics"]) == ({}, {})


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("val_exact_match >= 0.9", ["solved"]),
        ("not val_exact_match >= 0.9", ["peaked"]),  # label and old: no exact match, unknown
        ("val_accuracy > 0.8", ["label"]),
        ("train_token_accuracy >= 0.9", ["peaked", "solved"]),
        ("best_val_token_accuracy = 0.7", ["peaked"]),
        ("best_val_exact_match < 0.5", ["peaked"]),
        ("val_token_accuracy_t[2] < 0.6", ["peaked"]),
        ("train_token_accuracy_t[1] = 1", ["peaked", "solved"]),
        ("val_token_accuracy_t[3] < 2", []),
        ("best_metric > 0.69", ["peaked", "solved", "label"]),
        ("best_epoch = 2", ["solved", "label", "peaked"]),
        ("not best_epoch = 2", []),
        ("val_exact_match >= 0.9 or val_accuracy > 0.8", ["solved", "label"]),
    ],
)
def test_where_takes_metric_fields(engine, runs, where: str, expected: list[str]) -> None:  # noqa: ANN001
    assert {r.id for r in list_runs(engine, where=where)} == {runs[k] for k in expected}


def test_sort_by_metric_fields_puts_runs_without_them_last(engine, runs) -> None:  # noqa: ANN001
    def ids(sort: str, descending: bool, **more) -> list[str]:  # noqa: ANN003
        names = {v: k for k, v in runs.items()}
        return [names[r.id] for r in list_runs(engine, sort=sort, descending=descending, **more)]

    assert ids("best_metric", True) == ["solved", "label", "peaked", "old"]
    assert ids("best_metric", False, limit=2) == ["peaked", "label"]
    assert ids("val_exact_match", True) == ["solved", "peaked", "old", "label"]
    assert ids("val_token_accuracy_t[2]", False) == ["peaked", "solved", "old", "label"]
    assert ids("best_val_token_accuracy", True) == ["solved", "peaked", "old", "label"]
    assert ids("train_accuracy", True, where="best_epoch = 2") == ["label", "solved", "peaked"]


def test_summary_takes_a_metric_field(engine, runs) -> None:  # noqa: ANN001
    groups = summarize_runs(engine, RunFilter(), "task", "val_exact_match")
    by_task = {g["task"]: g for g in groups}
    assert by_task["translation"]["count"] == 2 and by_task["translation"]["runs"] == 3
    assert by_task["translation"]["max"] == 0.95 and by_task["translation"]["min"] == 0.3
    assert by_task["binary"]["count"] == 0
    [best] = summarize_runs(engine, RunFilter(task="translation"), "model", "best_metric")
    assert best["count"] == 2 and best["mean"] == pytest.approx((0.7 + 0.99) / 2)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("val_f1 > 0.5", "--where: unknown metric 'f1' in 'val_f1' at position 1"),
        ("lr < 1 and best_val_top5 > 0", "unknown metric 'top5' in 'best_val_top5' at position 12"),
        ("train_exact_matchx_t[2] > 0", "unknown metric 'exact_matchx'"),
        ("best_val_token_accuracy_t[2] > 0", "field 'best_val_token_accuracy_t[2]' at position 1"),
        ("val_token_accuracy_t[0] > 0", "unknown field 'val_token_accuracy_t[0]' at position 1"),
        ("val_accuracy > 'a'", "val_accuracy takes a number, got \"'a'\" at position 16"),
    ],
)  # fmt: skip
def test_an_unknown_metric_is_a_one_line_error_with_its_position(where: str, message: str) -> None:
    with pytest.raises(InputError) as raised:
        parse_where(where)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_database_from_before_metrics_upgrades_and_its_runs_read_back(database_url: str) -> None:
    """Runs recorded at revision 0004 list, show and filter with the new fields empty."""
    engine = make_engine(database_url)
    upgrade(engine, "0004")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO experiments (experiment_id, name, created_at) "
                "VALUES (1, 'old', CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO runs (run_id, experiment_id, task, model, status, spec, queue, "
                "priority, attempt, max_attempts, epochs_done, final_val_loss, final_metric, "
                "created_at, queued_at) VALUES (7, 1, 'binary', 'mlp', 'succeeded', "
                '\'{"task": "binary", "model": "mlp"}\', \'cpu\', 0, 1, 3, 2, 0.5, 0.8, '
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    upgrade(engine)
    run = get_run(engine, 7).to_json()
    assert (run["final_metric"], run["best_epoch"], run["best_metric"]) == (0.8, None, None)
    assert (run["best_metrics"], run["final_metrics"]) == ({}, {})
    assert get_metrics(engine, 7) == []
    assert [r.id for r in list_runs(engine, sort="best_metric")] == [7]
    for where in ("val_accuracy > 0", "not val_accuracy > 0", "best_epoch = 1", "best_metric < 1"):
        assert list_runs(engine, where=where) == []
    assert [r.id for r in list_runs(engine, where="final_metric = 0.8")] == [7]
    [group] = summarize_runs(engine, RunFilter(), "task", "best_val_accuracy")
    assert (group["runs"], group["count"]) == (1, 0)
