"""A sweep as a user runs it: submitted, watched and summarised through the CLI on a real
worker; then the trained models exported and queried, a run resubmitted, a bad run pruned."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from support import expq_env, run_cli


@pytest.fixture
def env(tmp_path: Path, embedded_broker_url: str, sqlite_url: str, worker_factory) -> dict:  # noqa: ANN001
    environment = expq_env(tmp_path, sqlite_url, embedded_broker_url)
    worker_factory(environment)
    return environment


def _json(env: dict, *args: str) -> object:
    result = run_cli(env, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_sweep_is_submitted_watched_and_summarised(env: dict, tmp_path: Path) -> None:
    runs = _json(
        env,
        "sweep",
        "--task",
        "binary",
        "--model",
        "rnn",
        "--hidden",
        "8,16",
        "--seeds",
        "3",
        "--epochs",
        "3",
        "--samples",
        "200",
        "--experiment",
        "sw",
        "--json",
    )
    assert len(runs) == 6 and len({(r["params"]["hidden"], r["params"]["seed"]) for r in runs}) == 6

    watched = run_cli(env, "watch", "--experiment", "sw", "--interval", "0.2", timeout=240)
    assert watched.returncode == 0, watched.stderr
    for run in runs:
        assert f"run {run['id']} succeeded epoch 3/3" in watched.stdout

    listed = _json(env, "runs", "list", "--experiment", "sw", "--format", "json")
    groups = _json(
        env, "runs", "summary", "--experiment", "sw", "--group-by", "hidden", "--format", "json"
    )
    assert [group["hidden"] for group in groups] == [8, 16]
    for group in groups:
        losses = [r["final_val_loss"] for r in listed if r["params"]["hidden"] == group["hidden"]]
        assert group["count"] == 3
        assert group["mean"] == pytest.approx(statistics.fmean(losses))
        assert group["std"] == pytest.approx(statistics.stdev(losses), abs=1e-9)
        assert (group["min"], group["max"]) == (min(losses), max(losses))

    source = runs[0]["id"]
    weights = tmp_path / "model.pt"
    exported = run_cli(env, "runs", "export-model", str(source), "-o", str(weights))
    assert exported.returncode == 0, exported.stderr
    state = torch.load(weights, weights_only=True)
    assert all(isinstance(value, torch.Tensor) for value in state.values()) and state
    assert json.loads(weights.with_suffix(".json").read_text())["spec"]["hidden"] == 8

    predicted = run_cli(env, "predict", str(source), "--input", ",".join(["0.1"] * 8))
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.strip() in {"0", "1"}
    refused = run_cli(env, "predict", str(source), "--input", "0.1,0.2")
    assert refused.returncode == 2 and "8 numbers" in refused.stderr

    again = _json(env, "submit", "--from-run", str(source), "--lr", "0.05", "--wait", "--json")
    assert again["experiment"] == "sw" and again["status"] == "succeeded"
    assert {k: v for k, v in again["spec"].items() if k != "lr"} == {
        k: v for k, v in runs[0]["spec"].items() if k != "lr"
    }
    diff = _json(env, "runs", "diff", str(source), str(again["id"]), "--format", "json")
    assert [row["field"] for row in diff["spec"]] == ["lr"]


def test_median_pruning_stops_the_run_worse_than_its_peers(env: dict) -> None:
    runs = _json(
        env,
        "sweep",
        "--task",
        "binary",
        "--model",
        "mlp",
        "--lr",
        "0.1,0.2,0.00001",
        "--epochs",
        "6",
        "--samples",
        "300",
        "--prune",
        "median",
        "--prune-warmup",
        "1",
        "--experiment",
        "pr",
        "--json",
    )
    ids = [run["id"] for run in runs]
    assert run_cli(env, "runs", "wait", *map(str, ids), "--timeout", "120").returncode == 1
    final = {
        run["id"]: run
        for run in _json(env, "runs", "list", "--experiment", "pr", "--format", "json")
    }
    assert [final[i]["status"] for i in ids] == ["succeeded", "succeeded", "pruned"]
    assert final[ids[2]]["error"].startswith("pruned at epoch 2")
    assert final[ids[2]]["epochs_done"] == 2
