"""Expanding sweeps, and `expq sweep` refusing a bad point before anything is queued."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from support import assert_nothing_written, expq_env, poll, run_cli

from service.errors import InputError
from service.sweep import expand, parse_range


def test_lists_make_a_grid_replicated_over_seeds() -> None:
    runs, points = expand(
        {"lr": "0.01,0.1", "hidden": "8,16", "task": "binary"},
        ranges=[],
        random_count=None,
        seeds=3,
        max_runs=12,
    )
    assert points == 4 and len(runs) == 12
    combos = {(run["lr"], run["hidden"], run["seed"]) for run in runs}
    assert len(combos) == 12
    assert {run["seed"] for run in runs} == {0, 1, 2}
    assert all(run["task"] == "binary" for run in runs)


def test_random_search_samples_ranges_reproducibly() -> None:
    ranges = [parse_range("lr=1e-3:1e-1:log"), parse_range("hidden=8:64")]
    first, points = expand({"seed": "7"}, ranges=ranges, random_count=20, seeds=1, max_runs=20)
    again, _ = expand({"seed": "7"}, ranges=ranges, random_count=20, seeds=1, max_runs=20)
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
        expand({}, ranges=[parse_range("lr=0.01:0.1")], random_count=None, seeds=1, max_runs=1)


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


TEN = ",".join(str(k) for k in range(1, 11))


def test_a_grid_is_counted_and_refused_before_it_is_built() -> None:
    names = ("hidden", "layers", "epochs", "batch_size", "seed", "lr", "momentum", "dropout")
    options = {name: TEN for name in names} | {"weight_decay": "0,0.1"}
    # 200 million points: building them first would not end in a test's time
    with pytest.raises(InputError) as caught:
        expand(options, ranges=[], random_count=None, seeds=1, max_runs=10_000)
    assert str(caught.value) == (
        "the sweep is 200,000,000 runs (batch_size 10 x dropout 10 x epochs 10 x hidden 10 x "
        "layers 10 x lr 10 x momentum 10 x seed 10 x weight_decay 2 x seeds 1); the limit is "
        "10,000: shrink the lists, or pass --max-runs 200000000 to allow it"
    )


def test_the_limit_counts_seeds_and_random_points_too() -> None:
    with pytest.raises(InputError, match=r"is 30 runs \(random 10 x seeds 3\); the limit is 29:"):
        expand({}, ranges=[parse_range("lr=0.01:0.1")], random_count=10, seeds=3, max_runs=29)
    runs, points = expand(
        {}, ranges=[parse_range("lr=0.01:0.1")], random_count=10, seeds=3, max_runs=30
    )
    assert (len(runs), points) == (30, 10)
    with pytest.raises(InputError, match=r"is 20 runs \(hidden 10 x seeds 2\)"):
        expand({"hidden": TEN}, ranges=[], random_count=None, seeds=2, max_runs=19)


def test_a_sweep_over_the_limit_exits_2_and_writes_nothing(
    tmp_path: Path, embedded_broker_url: str
) -> None:
    env = expq_env(tmp_path, f"sqlite:///{tmp_path / 'expq.db'}", embedded_broker_url)
    grid = ("sweep", "--task", "binary", "--model", "mlp", "--hidden", TEN, "--layers", TEN)
    for args in ((*grid, "--dry-run"), grid, (*grid, "--max-runs", "99")):
        result = run_cli(env, *args, "--epochs", TEN, "--lr", TEN, "--dropout", "0,0.1")
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("Error: the sweep is 20,000 runs (dropout 2 x epochs 10")
        assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert "the limit is 99: shrink the lists, or pass --max-runs 20000" in result.stderr
    assert_nothing_written(tmp_path, embedded_broker_url)
    allowed = run_cli(env, *grid, "--max-runs", "100", "--dry-run", "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert len(json.loads(allowed.stdout)) == 100


def test_a_large_dry_run_tables_its_first_runs_and_lists_all_as_json(
    tmp_path: Path, embedded_broker_url: str
) -> None:
    from service.commands.sweep import PLAN_ROWS

    env = expq_env(tmp_path, f"sqlite:///{tmp_path / 'expq.db'}", embedded_broker_url)
    grid = ("sweep", "--task", "binary", "--model", "mlp", "--hidden", TEN, "--layers", TEN)
    table = run_cli(env, *grid, "--dry-run")
    assert table.returncode == 0, table.stderr
    assert f"the first {PLAN_ROWS} shown; --json lists all" in " ".join(table.stdout.split())
    numbers = [line.split()[1] for line in table.stdout.splitlines() if line.startswith("│")]
    assert numbers == [str(k) for k in range(1, PLAN_ROWS + 1)]
    listed = run_cli(env, *grid, "--dry-run", "--json")
    specs = json.loads(listed.stdout)
    assert len({(spec["hidden"], spec["layers"]) for spec in specs}) == len(specs) == 100
    assert_nothing_written(tmp_path, embedded_broker_url)


def _message_run_ids(client: redis.Redis) -> list[int]:
    """The run id of every train message waiting in the broker's auto queue."""
    ids = []
    for key in client.keys("auto*"):  # one list per priority level
        for raw in client.lrange(key, 0, -1):
            body = json.loads(base64.b64decode(json.loads(raw)["body"]))
            ids.append(body[0][0])
    return sorted(ids)


def test_ctrl_c_stops_a_sweep_between_runs_each_stored_run_with_its_message(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    from service.db import get_engine
    from service.store import list_runs

    env = expq_env(tmp_path, database_url, redis_url)
    grid = ("--hidden", TEN, "--layers", TEN, "--epochs", TEN, "--lr", "0.1,0.2,0.3")
    sweep = subprocess.Popen(
        [sys.executable, "-m", "service", "sweep", "--task", "binary", "--model", "mlp", *grid],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    engine = get_engine(database_url)
    poll(lambda: len(list_runs(engine, limit=None)) >= 20, 60, "the sweep's first 20 runs")
    sweep.send_signal(signal.SIGINT)
    stdout, stderr = sweep.communicate(timeout=60)
    assert sweep.returncode == 130, stderr
    printed = sorted(int(run_id) for run_id in stdout.split())
    stored = sorted(run.id for run in list_runs(engine, limit=None))
    assert 20 <= len(stored) < 3000 and printed == stored
    assert _message_run_ids(redis.Redis.from_url(redis_url)) == stored
    assert stderr.startswith(f"interrupted: {len(stored)} of 3000 runs queued in experiment sweep-")
    assert stderr.endswith(
        f"each with its message; the other {3000 - len(stored)} were not stored\n"
    )
