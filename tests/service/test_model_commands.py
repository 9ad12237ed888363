"""`expq runs export-model` and `expq predict` on a run with a stored checkpoint."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from support import Split

from models.data import build_data
from models.spec import spec_from_dict
from models.training import fit
from service.cli import cli


def _store_trained(database_url: str, **spec_fields: object) -> int:
    """A succeeded binary MLP run (8 inputs) whose checkpoint is its one trained epoch."""
    from service.db import get_engine
    from service.lifecycle import claim_run, finish_run, record_epoch
    from service.store import NewRun, create_run

    engine = get_engine(database_url)
    fields = {"task": "binary", "model": "mlp", "epochs": 1, "samples": 60, "device": "cpu"}
    spec = spec_from_dict({**fields, **spec_fields})
    reports: list = []
    fit(spec, build_data(spec), on_epoch=reports.append, checkpoints=True)
    [report] = reports
    run = create_run(engine, spec.to_dict(), spec.params(), NewRun("models", "cpu"))
    attempt = claim_run(engine, run.id, owner="o", worker="w", device="cpu", lease_seconds=30)
    splits = {
        "train": Split(report.train.total, report.train.per_timestep),
        "val": Split(report.val.total, report.val.per_timestep),
    }
    record_epoch(engine, run.id, attempt, 1, splits, report.checkpoint.to_bytes())
    finish_run(engine, run.id, attempt, "succeeded")
    return run.id


@pytest.fixture
def trained_run(database_url: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("EXPQ_DATABASE_URL", database_url)
    return _store_trained(database_url)


@pytest.mark.parametrize("name", ["m.json", "m", "m.PT", "m.pt.json"])
def test_an_output_that_is_not_a_pt_file_is_refused_and_nothing_written(
    trained_run: int, tmp_path: Path, name: str
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    result = CliRunner().invoke(
        cli, ["runs", "export-model", str(trained_run), "-o", str(folder / name)]
    )
    assert result.exit_code == 2
    assert result.output == (
        f"Error: -o must name a .pt file (the spec goes beside it as .json); got {folder / name}\n"
    )
    assert list(folder.iterdir()) == []


def test_weights_and_spec_go_to_two_files(trained_run: int, tmp_path: Path) -> None:
    weights = tmp_path / "new" / "m.pt"
    result = CliRunner().invoke(cli, ["runs", "export-model", str(trained_run), "-o", str(weights)])
    assert result.exit_code == 0, result.output
    spec_path = tmp_path / "new" / "m.json"
    assert result.output == (
        f"run {trained_run}: epoch 1 weights in {weights}, spec in {spec_path}\n"
    )
    state = torch.load(weights, weights_only=True)
    assert state and all(isinstance(value, torch.Tensor) for value in state.values())
    document = json.loads(spec_path.read_text())
    assert (document["run"], document["epoch"], document["spec"]["task"]) == (
        trained_run,
        1,
        "binary",
    )
    assert sorted(path.name for path in weights.parent.iterdir()) == ["m.json", "m.pt"]


def test_an_interrupted_export_leaves_the_old_files_whole(
    trained_run: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    weights, spec_path = folder / "m.pt", folder / "m.json"
    weights.write_bytes(b"old weights")
    spec_path.write_text("old spec")

    def interrupted_save(obj: object, target) -> None:  # noqa: ANN001 - a path or a file
        with open(target, "wb") if isinstance(target, Path) else target as handle:
            handle.write(b"half of the new weights")
            raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    result = CliRunner().invoke(cli, ["runs", "export-model", str(trained_run), "-o", str(weights)])
    assert result.exit_code == 130 and result.output.strip() == "Aborted."
    assert weights.read_bytes() == b"old weights" and spec_path.read_text() == "old spec"
    assert sorted(path.name for path in folder.iterdir()) == ["m.json", "m.pt"]


@pytest.mark.parametrize("text", ["nan,1,1,1,1,1,1,1", "1,1,1,-inf,1,1,1,1", "1,1,1,1,1,1,1,1e39"])
def test_predict_refuses_a_non_finite_input(trained_run: int, text: str) -> None:
    result = CliRunner().invoke(cli, ["predict", str(trained_run), "--input", text])
    assert result.exit_code == 2
    assert (
        result.output.startswith("Error: the input must contain") and result.output.count("\n") == 1
    )
    assert (
        CliRunner().invoke(cli, ["predict", str(trained_run), "--input", "1," * 7 + "1"]).exit_code
        == 0
    )


def test_predict_on_stored_data_that_fails_a_newer_check_is_one_line(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.db import get_engine
    from service.store import save_dataset

    monkeypatch.setenv("EXPQ_DATABASE_URL", database_url)
    content = b'{"input": [1e308, 1], "target": 0}\n{"input": [1, 2], "target": 1}\n'
    digest = hashlib.sha256(content).hexdigest()
    save_dataset(get_engine(database_url), digest, content)  # as a submit before the check did
    run_id = _store_trained(database_url, data=digest)
    result = CliRunner().invoke(cli, ["predict", str(run_id), "--input", "1,2"])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: run {run_id}'s data line 1: input must contain numbers within +-3.403e+38 "
        "(float32); found 1e+308 (task binary takes a list of numbers)\n"
    )
