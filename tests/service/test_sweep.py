"""Expanding sweeps, and `expq sweep` refusing a bad point before anything is queued."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from support import assert_nothing_written, expq_env, run_cli

from service.errors import InputError
from service.sweep import expand, parse_range


def test_lists_make_a_grid_replicated_over_seeds() -> None:
    runs, points = expand(
        {"lr": "0.01,0.1", "hidden": "8,16", "task": "binary"},
        ranges=[],
        random_count=None,
        seeds=3,
    )
    assert points == 4 and len(runs) == 12
    combos = {(run["lr"], run["hidden"], run["seed"]) for run in runs}
    assert len(combos) == 12
    assert {run["seed"] for run in runs} == {0, 1, 2}
    assert all(run["task"] == "binary" for run in runs)


def test_random_search_samples_ranges_reproducibly() -> None:
    ranges = [parse_range("lr=1e-3:1e-1:log"), parse_range("hidden=8:64")]
    first, points = expand({"seed": "7"}, ranges=ranges, random_count=20, seeds=1)
    again, _ = expand({"seed": "7"}, ranges=ranges, random_count=20, seeds=1)
    assert points == 20 and first == again
    assert all(1e-3 <= run["lr"] <= 1e-1 for run in first)
    assert all(isinstance(run["hidden"], int) and 8 <= run["hidden"] <= 64 for run in first)
    assert len({run["lr"] for run in first}) == 20


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr", "NAME=LOW:HIGH"),
        ("lr=a:b", "must be numbers"),
        ("lr=0.1:0.01", "LOW must be below HIGH"),
        ("lr=0:1:log", "needs LOW > 0"),
        ("lr=0.1:1:cubic", "linear or log"),
    ],
)
def test_bad_ranges_are_refused(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_range(text)


def test_a_range_needs_random_mode() -> None:
    with pytest.raises(InputError, match="needs --random"):
        expand({}, ranges=[parse_range("lr=0.01:0.1")], random_count=None, seeds=1)


def test_dry_run_lists_the_runs_and_queues_nothing(
    tmp_path: Path, embedded_broker_url: str
) -> None:
    env = expq_env(tmp_path, f"sqlite:///{tmp_path / 'expq.db'}", embedded_broker_url)
    result = run_cli(
        env,
        "sweep",
        "--task",
        "binary",
        "--model",
        "mlp,rnn",
        "--lr",
        "0.05,0.1",
        "--seeds",
        "2",
        "--dry-run",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    specs = json.loads(result.stdout)
    assert len(specs) == 8 and {spec["model"] for spec in specs} == {"mlp", "rnn"}
    assert_nothing_written(tmp_path, embedded_broker_url)


def test_one_bad_point_queues_nothing(tmp_path: Path, embedded_broker_url: str) -> None:
    env = expq_env(tmp_path, f"sqlite:///{tmp_path / 'expq.db'}", embedded_broker_url)
    result = run_cli(env, "sweep", "--task", "binary", "--model", "mlp", "--lr", "0.1,0.05,-1")
    assert result.returncode == 2
    assert "sweep point 3 of 3: lr must be in" in result.stderr
    assert_nothing_written(tmp_path, embedded_broker_url)


def test_a_sweep_is_queued_in_one_experiment(tmp_path: Path, embedded_broker_url: str) -> None:
    env = expq_env(tmp_path, f"sqlite:///{tmp_path / 'expq.db'}", embedded_broker_url)
    result = run_cli(
        env,
        "sweep",
        "--task",
        "binary",
        "--model",
        "mlp",
        "--hidden",
        "8,16",
        "--seeds",
        "3",
        "--experiment",
        "grid",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    assert len(runs) == 6 and {run["experiment"] for run in runs} == {"grid"}
    assert {run["status"] for run in runs} == {"queued"}
    client = redis.Redis.from_url(embedded_broker_url)
    # kombu keeps one list per priority level: auto, auto:1, ... auto:9
    assert sum(client.llen(key) for key in client.keys("auto*")) == 6
