"""The CLI: help everywhere, one-line errors with their exit codes, output formats."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
import redis
from click.testing import CliRunner
from support import Split, expq_env, run_cli

from models.spec import spec_from_dict
from service.cli import cli
from service.demo import free_port
from service.lifecycle import claim_run, finish_run, record_epoch
from service.store import NewRun, create_run


def _walk(command: click.Command, path: str = "expq"):  # noqa: ANN202
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(sub, f"{path} {name}")


def test_every_command_and_option_has_help() -> None:
    for path, command in _walk(cli):
        assert command.help, f"{path} has no help"
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"{path} {param.opts[0]} has no help"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "vision", "--model", "mlp"], "task must be one of"),
        (["--task", "binary", "--model", "cnn"], "model must be one of"),
        (["--task", "binary", "--model", "mlp", "--lr", "0"], "lr must be in"),
        (["--task", "binary", "--model", "mlp", "--dropout", "1"], "dropout must be in [0, 1)"),
        (["--task", "binary", "--model", "mlp", "--hidden", "0"], "hidden must be in"),
        (["--task", "binary", "--model", "mlp", "--epochs", "0"], "epochs must be in"),
        (["--task", "binary", "--model", "mlp", "--hidden", "99999999"], "hidden must be in"),
        (["--task", "binary", "--model", "mlp", "--lr", "nan"], "lr must be finite"),
        (["--task", "binary", "--model", "mlp", "--lr", "inf"], "lr must be finite"),
        (["--task", "binary", "--model", "mlp", "--lr", "fast"], "lr must be a number"),
        (["--task", "binary", "--model", "mlp", "--data", "missing.jsonl"], "file not found"),
        (["--task", "binary", "--model", "mlp", "--tag", "novalue"], "KEY=VALUE"),
    ],
)
def test_invalid_submits_write_and_queue_nothing(
    tmp_path: Path, embedded_broker_url: str, args: list[str], message: str
) -> None:
    env = expq_env(tmp_path, f"sqlite:///{tmp_path / 'expq.db'}", embedded_broker_url)
    result = run_cli(env, "submit", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "expq.db").exists()
    assert redis.Redis.from_url(embedded_broker_url).dbsize() == 0


def test_bad_jsonl_is_refused_with_its_line_number(
    tmp_path: Path, embedded_broker_url: str
) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"input": [1, 2], "target": 0}\n{"input": [1], "target": 1}\n')
    env = expq_env(tmp_path, f"sqlite:///{tmp_path / 'expq.db'}", embedded_broker_url)
    result = run_cli(env, "submit", "--task", "binary", "--model", "mlp", "--data", str(data))
    assert result.returncode == 2
    assert "line 2" in result.stderr
    assert not (tmp_path / "expq.db").exists()


def test_a_dead_broker_exits_1_masked_and_leaves_no_run(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'expq.db'}"
    env = expq_env(tmp_path, database_url, f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    result = run_cli(env, "submit", "--task", "binary", "--model", "mlp", timeout=10)
    assert result.returncode == 1
    assert "broker unreachable at redis://:***@127.0.0.1" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    listed = run_cli(env, "runs", "list", "--format", "json")
    assert json.loads(listed.stdout) == []


def test_queries_never_import_torch(tmp_path: Path, embedded_broker_url: str) -> None:
    env = expq_env(tmp_path, f"sqlite:///{tmp_path / 'expq.db'}", embedded_broker_url)
    probe = (
        "import sys\nfrom service.cli import cli\n"
        "for args in (['submit', '--task', 'binary', '--model', 'mlp'], ['runs', 'list'],"
        " ['runs', 'show', '1'], ['runs', 'losses', '1']):\n"
        "    cli.main(args, standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def finished_run(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> int:
    from service.db import get_engine

    monkeypatch.setenv("EXPQ_DATABASE_URL", sqlite_url)
    engine = get_engine(sqlite_url)
    spec = spec_from_dict({"task": "translation", "model": "rnn", "epochs": 2})
    run = create_run(engine, spec.to_dict(), spec.params(), NewRun("cli", "cpu"))
    attempt = claim_run(engine, run.id, owner="o", worker="w", device="cpu", lease_seconds=30)
    for epoch in (1, 2):
        record_epoch(
            engine,
            run.id,
            attempt,
            epoch,
            {
                "train": Split(3.0 / epoch, [1.0, 2.0 / epoch]),
                "val": Split(4.0 / epoch, [2.0, 2.0 / epoch]),
            },
        )
    finish_run(engine, run.id, attempt, "succeeded")
    return run.id


def test_runs_list_in_every_format(finished_run: int) -> None:
    runner = CliRunner()
    as_json = runner.invoke(cli, ["runs", "list", "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    [run] = json.loads(as_json.output)
    for key in (
        "id",
        "experiment",
        "task",
        "model",
        "status",
        "params",
        "device",
        "worker",
        "attempt",
        "epochs_done",
        "final_train_loss",
        "final_val_loss",
        "best_val_loss",
        "final_metric",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    ):
        assert key in run
    assert run["status"] == "succeeded" and run["final_val_loss"] == 2.0
    assert run["params"]["epochs"] == 2
    as_csv = runner.invoke(cli, ["runs", "list", "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert rows[0]["id"] == str(finished_run) and rows[0]["param.task"] == "translation"
    table = runner.invoke(cli, ["runs", "list"])
    assert "succeeded" in table.output and "translation" in table.output


def test_runs_show_and_losses(finished_run: int) -> None:
    runner = CliRunner()
    shown = runner.invoke(cli, ["runs", "show", str(finished_run)])
    assert shown.exit_code == 0, shown.output
    assert "t=2" in shown.output and "succeeded" in shown.output
    detail = json.loads(
        runner.invoke(cli, ["runs", "show", str(finished_run), "--format", "json"]).output
    )
    assert len(detail["losses"]) == 2 * 2 * 3
    losses = json.loads(
        runner.invoke(
            cli,
            [
                "runs",
                "losses",
                str(finished_run),
                "--split",
                "val",
                "--epoch",
                "last",
                "--format",
                "json",
            ],
        ).output
    )
    assert losses == [
        {"epoch": 2, "split": "val", "timestep": 1, "value": 2.0},
        {"epoch": 2, "split": "val", "timestep": 2, "value": 1.0},
        {"epoch": 2, "split": "val", "timestep": None, "value": 2.0},
    ]
    missing = runner.invoke(cli, ["runs", "show", "999"])
    assert missing.exit_code == 2 and "no run with id 999" in missing.output


def test_runs_wait_exit_codes(finished_run: int) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["runs", "wait", str(finished_run)]).exit_code == 0
    cancelled = runner.invoke(cli, ["runs", "cancel", str(finished_run)])
    assert cancelled.exit_code == 2 and "already ended succeeded" in cancelled.output


def test_runs_wait_times_out_with_exit_1(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.db import get_engine

    monkeypatch.setenv("EXPQ_DATABASE_URL", sqlite_url)
    spec = spec_from_dict({"task": "binary", "model": "mlp"})
    run = create_run(get_engine(sqlite_url), spec.to_dict(), spec.params(), NewRun("cli", "cpu"))
    result = CliRunner().invoke(cli, ["runs", "wait", str(run.id), "--timeout", "0.2"])
    assert result.exit_code == 1
    assert CliRunner().invoke(cli, ["runs", "cancel", str(run.id)]).exit_code == 0
    assert CliRunner().invoke(cli, ["runs", "wait", str(run.id)]).exit_code == 1
