"""`expq runs export-model` and `expq predict` on a run with a stored checkpoint."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from sqlalchemy import select
from support import Split

from models.data import build_data
from models.spec import spec_from_dict
from models.training import fit
from service.cli import cli


def _store_trained(database_url: str, legacy: bool = False, **spec_fields: object) -> int:
    """A succeeded binary MLP run (8 inputs) whose checkpoint is its one trained epoch;
    `legacy`: a checkpoint as written before checkpoints carried the data's encoding."""
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
    state = report.checkpoint
    if legacy:
        state = dataclasses.replace(state, encoding=None)
    record_epoch(engine, run.id, attempt, 1, splits, state.to_bytes())
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
        f"run {trained_run}: best epoch 1 of 1 (lowest val loss): weights in {weights}, "
        f"spec and encoding in {spec_path}\n"
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


def test_predict_from_an_old_checkpoint_on_stored_data_that_fails_a_newer_check_is_one_line(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.db import get_engine
    from service.store import save_dataset

    monkeypatch.setenv("EXPQ_DATABASE_URL", database_url)
    content = b'{"input": [1e308, 1], "target": 0}\n{"input": [1, 2], "target": 1}\n'
    digest = hashlib.sha256(content).hexdigest()
    save_dataset(get_engine(database_url), digest, content)  # as a submit before the check did
    run_id = _store_trained(database_url, legacy=True, data=digest)
    result = CliRunner().invoke(cli, ["predict", str(run_id), "--input", "1,2"])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: run {run_id}'s data line 1: input must contain numbers within +-3.403e+38 "
        "(float32); found 1e+308 (task binary takes a list of numbers)\n"
    )


def _invoke(*args: str):  # noqa: ANN202 - click.testing.Result
    return CliRunner().invoke(cli, list(args))


def _store_epochs(database_url: str, val_losses: list[float], status: str) -> tuple[int, list]:
    """A binary MLP run whose epochs carry real, distinct weights (one fit, a checkpoint each
    epoch) and the val losses given, so that its best epoch is the one chosen; the states."""
    from service.db import get_engine
    from service.lifecycle import claim_run, finish_run, record_epoch
    from service.store import NewRun, create_run

    engine = get_engine(database_url)
    raw = {"task": "binary", "model": "mlp", "samples": 60, "device": "cpu"}
    spec = spec_from_dict({**raw, "epochs": len(val_losses)})
    reports: list = []
    fit(spec, build_data(spec), on_epoch=reports.append, checkpoints=True)
    run = create_run(engine, spec.to_dict(), spec.params(), NewRun("models", "cpu"))
    attempt = claim_run(engine, run.id, owner="o", worker="w", device="cpu", lease_seconds=30)
    states = []
    for report, val_loss in zip(reports, val_losses, strict=True):
        state = report.checkpoint
        if not math.isfinite(val_loss):  # as a diverged epoch leaves them
            nan = {name: torch.full_like(value, math.nan) for name, value in state.model.items()}
            state = dataclasses.replace(state, model=nan)
        splits = {
            "train": Split(report.train.total, report.train.per_timestep),
            "val": Split(val_loss, [val_loss], report.val.metric, report.val.metrics),
        }
        record_epoch(engine, run.id, attempt, report.epoch, splits, state.to_bytes())
        states.append(state)
    finish_run(engine, run.id, attempt, status)
    return run.id, states


def _same_weights(path: Path, weights: dict) -> bool:
    exported = torch.load(path, weights_only=True)
    return exported.keys() == weights.keys() and all(
        torch.equal(exported[name], weights[name]) for name in weights
    )


def test_export_and_predict_use_the_best_epoch_unless_asked_for_the_last(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from models.predict import predict as run_network

    monkeypatch.setenv("EXPQ_DATABASE_URL", database_url)
    run_id, states = _store_epochs(database_url, [0.9, 0.5, 0.7], "succeeded")
    best, last = tmp_path / "best.pt", tmp_path / "last.pt"

    result = _invoke("runs", "export-model", str(run_id), "-o", str(best))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"run {run_id}: best epoch 2 of 3 (lowest val loss): ")
    assert _same_weights(best, states[1].model) and not _same_weights(best, states[2].model)
    document = json.loads(best.with_suffix(".json").read_text())
    assert (document["epoch"], document["which"]) == (2, "best")

    result = _invoke("runs", "export-model", str(run_id), "-o", str(last), "--epoch", "last")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"run {run_id}: last epoch 3: ")
    assert _same_weights(last, states[2].model)
    assert json.loads(last.with_suffix(".json").read_text())["epoch"] == 3

    text = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8"
    spec = spec_from_dict(document["spec"])
    from models.data import Encoding

    encoding = Encoding.from_dict(document["encoding"])
    raw = [float(v) for v in text.split(",")]
    for which, state, epoch in (("best", states[1], 2), ("last", states[2], 3)):
        result = _invoke("predict", str(run_id), "--input", text, "--epoch", which, "--json")
        assert result.exit_code == 0, result.output
        printed = json.loads(result.stdout)
        assert (printed["epoch"], printed["which"]) == (epoch, which)
        assert printed["prediction"] == run_network(spec, encoding, state.model, raw)
    result = _invoke("predict", str(run_id), "--input", text)
    assert result.stderr == f"run {run_id}: best epoch 2 of 3 (lowest val loss)\n"
    assert result.stdout.strip() in {"0", "1"}


def test_a_diverged_run_exports_its_best_finite_epoch_never_non_finite_weights(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EXPQ_DATABASE_URL", database_url)
    run_id, states = _store_epochs(database_url, [0.8, 0.6, math.nan], "diverged")
    weights = tmp_path / "m.pt"
    result = _invoke("runs", "export-model", str(run_id), "-o", str(weights))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"run {run_id}: best epoch 2 of 3 (lowest val loss): ")
    assert _same_weights(weights, states[1].model)

    refused = tmp_path / "refused"
    refused.mkdir()
    result = _invoke(
        "runs", "export-model", str(run_id), "-o", str(refused / "m.pt"), "--epoch", "last"
    )
    assert result.exit_code == 2
    assert result.output == (
        f"Error: run {run_id} (diverged): the weights of epoch 3 are not finite; "
        "--epoch best gives its best epoch\n"
    )
    assert list(refused.iterdir()) == []
    result = _invoke("predict", str(run_id), "--input", "1,1,1,1,1,1,1,1", "--epoch", "last")
    assert result.exit_code == 2 and "not finite" in result.output


def _execute(database_url: str, tmp_path: Path, **fields: object) -> int:
    """A run queued and trained in this process by the worker's own code; its id."""
    from service.config import Settings
    from service.db import get_engine
    from service.store import NewRun, create_run
    from workers.runner import execute_run

    engine = get_engine(database_url)
    spec = spec_from_dict({"device": "cpu", **fields})
    run_id = create_run(engine, spec.to_dict(), spec.params(), NewRun("models", "cpu")).id
    settings = Settings(
        home=tmp_path,
        database_url=database_url,
        broker_url="redis://unused",
        heartbeat_seconds=0.2,
        lease_seconds=30,
    )
    execute_run(engine, run_id, settings)
    return run_id


def _best(database_url: str, run_id: int) -> tuple:
    from service.db import get_engine, session_scope
    from service.schema import Checkpoint, Run

    with session_scope(get_engine(database_url)) as session:
        return tuple(
            session.execute(
                select(
                    Run.status,
                    Run.epochs_done,
                    Run.best_epoch,
                    Run.best_metric,
                    Run.final_metric,
                    Checkpoint.best_epoch,
                )
                .join(Checkpoint, Checkpoint.run_id == Run.run_id)
                .where(Run.run_id == run_id)
            ).one()
        )


def test_a_real_run_that_overfits_hands_out_its_best_epoch(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A wide MLP on 48 training rows with a high lr: val loss bottoms out, then climbs."""
    monkeypatch.setenv("EXPQ_DATABASE_URL", database_url)
    overfit = {"task": "binary", "model": "mlp", "samples": 60, "hidden": 128, "lr": 0.5}
    run_id = _execute(database_url, tmp_path, **overfit, epochs=40)
    status, done, best, best_metric, final_metric, kept = _best(database_url, run_id)
    assert (status, done) == ("succeeded", 40)
    assert best < done and kept == best
    assert best_metric > final_metric  # the overfitted last epoch is worse on val
    result = _invoke("runs", "export-model", str(run_id), "-o", str(tmp_path / "m.pt"))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"run {run_id}: best epoch {best} of 40 (lowest val loss)")
    result = _invoke("predict", str(run_id), "--input", "0,0,0,0,0,0,0,0", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["epoch"] == best


def test_a_real_diverged_run_exports_its_best_finite_epoch(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without gradient clipping a ReLU MLP at lr 50 blows up within a few epochs."""
    monkeypatch.setenv("EXPQ_DATABASE_URL", database_url)
    blows_up = {
        "task": "binary",
        "model": "mlp",
        "activation": "relu",
        "samples": 200,
        "hidden": 32,
        "lr": 50,
        "grad_clip": 0,
        "epochs": 20,
    }
    run_id = _execute(database_url, tmp_path, **blows_up)
    status, done, best, *_ = _best(database_url, run_id)
    assert status == "diverged" and best is not None and best < done
    weights = tmp_path / "m.pt"
    result = _invoke("runs", "export-model", str(run_id), "-o", str(weights))
    assert result.exit_code == 0, result.output
    assert json.loads(weights.with_suffix(".json").read_text())["epoch"] == best
    exported = torch.load(weights, weights_only=True)
    assert all(torch.isfinite(value).all() for value in exported.values())


def test_predict_needs_neither_the_dataset_nor_the_generator(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A --data run with words of its own: after its dataset row is deleted and with the
    built-in generators broken, predict and a user's own code still read its inputs."""
    from sqlalchemy import delete

    import models.data
    from models.predict import parse_input
    from models.predict import predict as run_network
    from models.tasks import GENERATORS
    from service.db import get_engine, session_scope
    from service.schema import Dataset
    from service.store import save_dataset

    monkeypatch.setenv("EXPQ_DATABASE_URL", database_url)
    lines = [
        json.dumps({"input": [word, "blah"] * 3, "target": label})
        for word, label in [("zorp", "yes"), ("blick", "no")] * 20
    ]
    content = ("\n".join(lines) + "\n").encode()
    digest = hashlib.sha256(content).hexdigest()
    save_dataset(get_engine(database_url), digest, content)
    run_id = _execute(
        database_url, tmp_path, task="sentiment", model="rnn", data=digest, hidden=16, epochs=15
    )
    with session_scope(get_engine(database_url)) as session:
        session.execute(delete(Dataset))

    def unavailable(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data was rebuilt")

    monkeypatch.setattr(models.data, "build_data", unavailable)
    for task in list(GENERATORS):
        monkeypatch.setitem(GENERATORS, task, unavailable)
    answers = {}
    for sentence in ("zorp blah zorp", "blick blah blick"):
        result = _invoke("predict", str(run_id), "--input", sentence)
        assert result.exit_code == 0, result.output
        answers[sentence] = result.stdout.strip()
    assert answers == {"zorp blah zorp": "yes", "blick blah blick": "no"}

    weights = tmp_path / "m.pt"
    assert _invoke("runs", "export-model", str(run_id), "-o", str(weights)).exit_code == 0
    # a user's own code: the two exported files and expq's network definitions, nothing else
    from models.data import Encoding
    from models.networks import build_model

    document = json.loads(weights.with_suffix(".json").read_text())
    assert document["encoding"]["output_vocab"] == ["no", "yes"]
    assert {"zorp", "blick", "blah"} <= set(document["encoding"]["input_vocab"])
    spec, encoding = spec_from_dict(document["spec"]), Encoding.from_dict(document["encoding"])
    state = torch.load(weights, weights_only=True)
    build_model(spec, encoding.dims).load_state_dict(state)
    for sentence, answer in answers.items():
        raw = parse_input(sentence, encoding.dims.input_kind)
        assert run_network(spec, encoding, state, raw) == answer
