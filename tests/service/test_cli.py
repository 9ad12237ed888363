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
from click.testing import CliRunner
from support import Split, assert_nothing_written, expq_env, run_cli

from models.spec import spec_from_dict
from service.cli import cli
from service.demo import free_port
from service.lifecycle import claim_run, finish_run, give_back_owner, record_epoch
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
    assert_nothing_written(tmp_path, embedded_broker_url)


def test_bad_jsonl_is_refused_with_its_line_number(
    tmp_path: Path, embedded_broker_url: str
) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"input": [1, 2], "target": 0}\n{"input": [1], "target": 1}\n')
    env = expq_env(tmp_path, f"sqlite:///{tmp_path / 'expq.db'}", embedded_broker_url)
    result = run_cli(env, "submit", "--task", "binary", "--model", "mlp", "--data", str(data))
    assert result.returncode == 2
    assert "line 2" in result.stderr
    assert_nothing_written(tmp_path, embedded_broker_url)


def test_val_data_of_another_input_length_is_refused_at_submit(
    tmp_path: Path, embedded_broker_url: str
) -> None:
    data, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    data.write_text('{"input": [1, 2], "target": 0}\n{"input": [3, 4], "target": 1}\n')
    val.write_text('{"input": [1, 2, 3], "target": 0}\n{"input": [4, 5, 6], "target": 1}\n')
    env = expq_env(tmp_path, f"sqlite:///{tmp_path / 'expq.db'}", embedded_broker_url)
    result = run_cli(
        env, "submit", "--task", "binary", "--model", "mlp", "--data", str(data),
        "--val-data", str(val),
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.endswith(
        "--val-data inputs have 3 numbers but --data inputs have 2; "
        "both files must have the same input length\n"
    )
    assert result.stderr.count("\n") == 1
    assert_nothing_written(tmp_path, embedded_broker_url)


def test_a_dead_broker_exits_1_masked_and_leaves_no_run(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'expq.db'}"
    env = expq_env(tmp_path, database_url, f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    result = run_cli(env, "submit", "--task", "binary", "--model", "mlp", timeout=10)
    assert result.returncode == 1
    assert "broker unreachable at redis://:***@127.0.0.1" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    listed = run_cli(env, "runs", "list", "--format", "json")
    assert json.loads(listed.stdout) == []


def test_ctrl_c_on_submit_wait_stops_the_waiting_not_the_run(
    tmp_path: Path, sqlite_url: str, embedded_broker_url: str
) -> None:
    """No worker: the run stays queued while submit waits; Ctrl-C ends the waiting (130) and
    says the run goes on and how to stop it, instead of a bare "Aborted."."""
    import signal

    from service.db import get_engine
    from service.store import get_run

    submit = subprocess.Popen(
        [sys.executable, "-m", "service", "submit", "--task", "binary", "--model", "mlp", "--wait"],
        env=expq_env(tmp_path, sqlite_url, embedded_broker_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_id = int(submit.stdout.readline())
    assert "queued" in submit.stdout.readline()  # its first progress line: it is waiting
    submit.send_signal(signal.SIGINT)
    _, stderr = submit.communicate(timeout=30)
    assert submit.returncode == 130, stderr
    assert (
        stderr == f"stopped waiting; run {run_id} goes on (`expq runs cancel {run_id}` stops it)\n"
    )
    assert get_run(get_engine(sqlite_url), run_id).status == "queued"


def test_queries_never_import_torch(tmp_path: Path, embedded_broker_url: str) -> None:
    env = expq_env(tmp_path, f"sqlite:///{tmp_path / 'expq.db'}", embedded_broker_url)
    probe = (
        "import sys\nfrom service.cli import cli\n"
        "submit = ['submit', '--task', 'binary', '--model', 'mlp']\n"
        f"plot = ['runs', 'plot', '1', '2', '-o', {str(tmp_path / 'p.png')!r}]\n"
        "for args in (submit, submit, ['runs', 'list'], ['runs', 'show', '1'],"
        " ['runs', 'losses', '1'], ['runs', 'list', '--where', 'lr < 1 or val_loss_t[2] < 1'],"
        " ['runs', 'summary', '--group-by', 'model,tag.k'], ['runs', 'compare', '1', '2'],"
        " ['export'], ['export', '--losses', '--format', 'json'], plot):\n"
        "    cli.main(args, standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'matplotlib' in sys.modules, 'runs plot drew nothing'\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_runs_list_on_sqlite_imports_only_what_it_uses(
    tmp_path: Path, embedded_broker_url: str
) -> None:
    env = expq_env(tmp_path, f"sqlite:///{tmp_path / 'expq.db'}", embedded_broker_url)
    assert run_cli(env, "submit", "--task", "binary", "--model", "mlp").returncode == 0
    unused = (
        "torch", "celery", "kombu", "starlette", "matplotlib", "psycopg", "alembic",
        "sqlalchemy.dialects.postgresql", "service.commands.submit", "service.commands.export",
        "service.ui.command",
    )  # fmt: skip
    probe = (
        "import sys\nfrom service.cli import cli\n"
        "cli.main(['runs', 'list', '--where', 'val_loss_t[2] < 1 or lr > 0'], "
        "standalone_mode=False)\n"
        f"print(sorted(name for name in {unused!r} if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert "binary" in result.stdout


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


def test_runs_show_and_list_count_the_attempts_given_back(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.db import get_engine

    monkeypatch.setenv("EXPQ_DATABASE_URL", sqlite_url)
    engine = get_engine(sqlite_url)
    spec = spec_from_dict({"task": "binary", "model": "mlp", "epochs": 1})
    run = create_run(engine, spec.to_dict(), spec.params(), NewRun("cli", "cpu"))
    claim_run(engine, run.id, owner="o", worker="w", device="cpu", lease_seconds=30)
    give_back_owner(engine, "o", "its worker was shut down (cold shutdown)")
    attempt = claim_run(engine, run.id, owner="o", worker="w", device="cpu", lease_seconds=30)
    finish_run(engine, run.id, attempt, "succeeded")

    shown = _json(["runs", "show", str(run.id), "--format", "json"])
    assert (shown["attempt"], shown["max_attempts"], shown["given_back"]) == (2, 3, 1)
    table = CliRunner().invoke(cli, ["runs", "show", str(run.id)])
    assert "2/4 (1 given back)" in table.output
    listed = _json(["runs", "list", "--where", "given_back >= 1", "--format", "json"])
    assert [r["id"] for r in listed] == [run.id]
    assert _json(["runs", "list", "--where", "given_back = 0", "--format", "json"]) == []


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


@pytest.fixture
def two_runs(finished_run: int, sqlite_url: str) -> tuple[int, int]:
    """`finished_run` (lr 0.1 default) and a second run: lr 0.05, hidden 8, three timesteps."""
    from service.db import get_engine

    engine = get_engine(sqlite_url)
    spec = spec_from_dict({"task": "translation", "model": "rnn", "lr": 0.05, "hidden": 8})
    run = create_run(engine, spec.to_dict(), spec.params(), NewRun("cli", "cpu", tags={"k": "v"}))
    attempt = claim_run(engine, run.id, owner="o", worker="w", device="cpu", lease_seconds=30)
    record_epoch(
        engine,
        run.id,
        attempt,
        1,
        {"train": Split(0.5, [0.1, 0.2, 0.2]), "val": Split(0.9, [0.1, 0.3, 0.5])},
    )
    return finished_run, run.id


def _json(args: list[str]):  # noqa: ANN202
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_runs_list_where_with_or_parentheses_and_a_timestep(two_runs: tuple[int, int]) -> None:
    first, second = two_runs
    where = "(lr < 0.06 or hidden > 1000) and val_loss_t[3] < 0.6"
    assert [r["id"] for r in _json(["runs", "list", "--where", where, "--format", "json"])] == [
        second
    ]
    where = "val_loss_t[2] >= 1 or (tag.k = 'v' and not status = 'queued')"
    found = _json(["runs", "list", "--where", where, "--sort", "id:asc", "--format", "json"])
    assert [r["id"] for r in found] == [first, second]
    ordered = _json(["runs", "list", "--sort", "val_loss_t[1]:desc", "--format", "json"])
    assert [r["id"] for r in ordered] == [first, second]  # 2.0 before 0.1
    bad = CliRunner().invoke(cli, ["runs", "list", "--where", "lr < 0.1 and (hidden = 8"])
    assert bad.exit_code == 2
    assert bad.output == "Error: --where: expected ')', got end of expression at position 25\n"
    bad = CliRunner().invoke(cli, ["runs", "list", "--sort", "val_loss_t[x]"])
    assert bad.exit_code == 2 and "unknown field 'val_loss_t[x]' at position 1" in bad.output


def test_runs_list_where_from_a_real_process(two_runs: tuple[int, int], tmp_path: Path) -> None:
    import os

    first, second = two_runs
    env = {**os.environ, "EXPQ_HOME": str(tmp_path / "home")}
    where = "(model = 'rnn' or tag.k = 'x') and val_loss_t[1] <= 0.1 and lr in (0.05, 0.5)"
    result = run_cli(env, "runs", "list", "--where", where, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in json.loads(result.stdout)] == [second]
    result = run_cli(env, "runs", "list", "--where", "lr < 1; DROP TABLE runs")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "Error: --where: unexpected ';' at position 7\n"


def test_runs_summary_in_every_format(two_runs: tuple[int, int]) -> None:
    groups = _json(["runs", "summary", "--group-by", "hidden", "--format", "json"])
    assert [g["hidden"] for g in groups] == [8, 128]
    assert set(groups[0]) == {"hidden", "runs", "count", "mean", "std", "min", "max"}
    assert groups[0]["mean"] == 0.9 and groups[1]["mean"] == 2.0
    by_mean = _json(
        ["runs", "summary", "--group-by", "model", "--metric", "val_loss_t[1]", "--format", "json"]
    )
    assert by_mean[0]["count"] == 2 and by_mean[0]["min"] == 0.1 and by_mean[0]["max"] == 2.0
    desc = _json(
        ["runs", "summary", "--group-by", "hidden", "--sort", "mean:desc", "--format", "json"]
    )
    assert [g["hidden"] for g in desc] == [128, 8]
    as_csv = CliRunner().invoke(
        cli, ["runs", "summary", "--group-by", "lr,tag.k", "--format", "csv"]
    )
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert rows[0].keys() >= {"lr", "tag.k", "count", "mean", "std", "min", "max"}
    table = CliRunner().invoke(cli, ["runs", "summary", "--group-by", "model"])
    assert table.exit_code == 0 and "final_val_loss by model" in table.output
    for args, message in (
        (["--group-by", "nope"], "--group-by: unknown field 'nope'"),
        (["--group-by", "model", "--metric", "model"], "--metric: model is not a number"),
        (["--group-by", "model", "--sort", "median"], "--sort: 'median' is neither"),
    ):
        bad = CliRunner().invoke(cli, ["runs", "summary", *args])
        assert bad.exit_code == 2 and message in bad.output


def test_runs_compare_marks_differing_hyperparameters(two_runs: tuple[int, int]) -> None:
    first, second = two_runs
    shown = _json(["runs", "compare", str(first), str(second), "--format", "json"])
    assert shown["runs"] == [first, second]
    differs = {row["field"] for row in shown["rows"] if row["differs"]}
    assert differs == {"lr", "hidden", "epochs", "tag.k"}
    lr = next(row for row in shown["rows"] if row["field"] == "lr")
    assert lr["values"] == [0.1, 0.05]
    table = CliRunner().invoke(cli, ["runs", "compare", str(first), str(second)])
    assert table.exit_code == 0
    marked = [line for line in table.output.splitlines() if "≠" in line]
    assert any(" lr " in line for line in marked) and not any("momentum" in line for line in marked)
    missing = CliRunner().invoke(cli, ["runs", "compare", str(first), "999"])
    assert missing.exit_code == 2 and "no run with id 999" in missing.output


def test_runs_plot_writes_a_png_naming_what_differs(
    two_runs: tuple[int, int], tmp_path: Path
) -> None:
    from service.plots import run_labels
    from service.store import get_runs

    first, second = two_runs
    image = tmp_path / "curves.png"
    result = CliRunner().invoke(cli, ["runs", "plot", str(first), str(second), "-o", str(image)])
    assert result.exit_code == 0, result.output
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size > 10_000
    from service.commands.common import open_engine

    labels = run_labels(get_runs(open_engine(), [first, second]))
    assert labels == [
        f"run {first}: hidden=128, lr=0.1, epochs=2",
        f"run {second}: hidden=8, lr=0.05, epochs=20",
    ]
    bad = CliRunner().invoke(cli, ["runs", "plot", "999", "-o", str(image)])
    assert bad.exit_code == 2 and "no run with id 999" in bad.output


def test_export_runs_and_losses_as_csv_and_json(two_runs: tuple[int, int]) -> None:
    first, second = two_runs
    rows = list(csv.DictReader(io.StringIO(CliRunner().invoke(cli, ["export"]).output)))
    assert [int(r["id"]) for r in rows] == [first, second]
    assert rows[1]["param.lr"] == "0.05" and rows[1]["tag.k"] == "v" and rows[0]["tag.k"] == ""
    as_json = _json(["export", "--format", "json", "--where", "hidden = 8"])
    assert [r["id"] for r in as_json] == [second] and as_json[0]["params"]["hidden"] == 8
    losses = _json(["export", "--losses", "--format", "json", "--where", f"id = {second}"])
    assert len(losses) == 2 * 4
    assert losses[0] == {
        "run_id": second,
        "epoch": 1,
        "split": "train",
        "timestep": 1,
        "value": 0.1,
    }
    assert losses[3]["timestep"] is None and losses[3]["value"] == 0.5
    long = CliRunner().invoke(cli, ["export", "--losses", "--where", "lr > 0.06"])
    table = list(csv.DictReader(io.StringIO(long.output)))
    assert len(table) == 2 * 2 * 3 and {r["run_id"] for r in table} == {str(first)}
    assert _json(["export", "--format", "json", "--where", "lr > 5"]) == []
    bad = CliRunner().invoke(cli, ["export", "--where", "lr <"])
    assert bad.exit_code == 2 and "position 5" in bad.output


@pytest.fixture
def peaked_run(database_url: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """A translation run whose best epoch (2, val token accuracy 0.75) is not its last (3)."""
    from metric_support import sequence, write_metrics

    from service.db import get_engine

    monkeypatch.setenv("EXPQ_DATABASE_URL", database_url)
    engine = get_engine(database_url)
    spec = spec_from_dict({"task": "translation", "model": "rnn", "epochs": 3})
    run = create_run(engine, spec.to_dict(), spec.params(), NewRun("cli", "cpu"))
    attempt = claim_run(engine, run.id, owner="o", worker="w", device="cpu", lease_seconds=30)
    curves = {
        epoch: {"train": sequence(v + 0.125, v / 2, [v, v]), "val": sequence(v, v / 4, [v, v])}
        for epoch, v in ((1, 0.5), (2, 0.75), (3, 0.625))
    }
    write_metrics(engine, run.id, attempt, curves, [2.0, 1.0, 1.5])
    return run.id


def test_runs_metrics_in_every_format(peaked_run: int) -> None:
    last = _json(["runs", "metrics", str(peaked_run), "--epoch", "last", "--format", "json"])
    assert last[:3] == [
        {"epoch": 3, "split": "train", "name": "exact_match", "timestep": None, "value": 0.3125},
        {"epoch": 3, "split": "train", "name": "token_accuracy", "timestep": None, "value": 0.75},
        {"epoch": 3, "split": "train", "name": "token_accuracy", "timestep": 1, "value": 0.625},
    ]
    assert (
        len(last) == 2 * 4
        and len(_json(["runs", "metrics", str(peaked_run), "--format", "json"])) == 24
    )
    val = CliRunner().invoke(
        cli,
        ["runs", "metrics", str(peaked_run), "--split", "val", "--epoch", "2", "--format", "csv"],
    )
    rows = list(csv.DictReader(io.StringIO(val.output)))
    assert [(r["name"], r["timestep"], r["value"]) for r in rows] == [
        ("exact_match", "", "0.1875"),
        ("token_accuracy", "", "0.75"),
        ("token_accuracy", "1", "0.75"),
        ("token_accuracy", "2", "0.75"),
    ]
    table = CliRunner().invoke(cli, ["runs", "metrics", str(peaked_run), "--epoch", "1"])
    assert table.exit_code == 0 and "whole" in table.output and "token_accuracy" in table.output
    for args, message in (
        (["--epoch", "best"], "--epoch takes a number, last or all; got 'best'"),
        (["--split", "test"], "Invalid value for '--split'"),
    ):
        bad = CliRunner().invoke(cli, ["runs", "metrics", str(peaked_run), *args])
        assert bad.exit_code == 2 and message in bad.output
    missing = CliRunner().invoke(cli, ["runs", "metrics", "999"])
    assert missing.exit_code == 2 and "no run with id 999" in missing.output


def test_show_and_list_carry_the_best_epoch_and_metric(peaked_run: int) -> None:
    shown = _json(["runs", "show", str(peaked_run), "--format", "json"])
    assert (shown["best_epoch"], shown["best_metric"], shown["final_metric"]) == (2, 0.75, 0.625)
    assert shown["best_metrics"] == {"token_accuracy": 0.75, "exact_match": 0.1875}
    table = CliRunner().invoke(cli, ["runs", "show", str(peaked_run)])
    assert "best epoch" in table.output and "│ 2 " in table.output
    flat = table.output.replace("\n", "")
    assert "token_accuracy=0.625" in flat and "exact_match=0.1562" in flat
    listed = CliRunner().invoke(cli, ["runs", "list"])
    lines = listed.output.splitlines()
    header = next(line for line in lines if "best (ep)" in line)
    row = next(line for line in lines if line.startswith(f"│ {peaked_run} "))
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    columns = [cell.strip() for cell in header.strip("┃").split("┃")]
    shown = dict(zip(columns, cells, strict=True))
    assert (shown["best (ep)"], shown["final"], shown["val L"]) == ("0.75 (2)", "0.625", "1.5")
    assert max(len(line) for line in lines) <= 120
    rows = list(
        csv.DictReader(
            io.StringIO(CliRunner().invoke(cli, ["runs", "list", "--format", "csv"]).output)
        )
    )
    assert (rows[0]["best_epoch"], rows[0]["best_metric"]) == ("2", "0.75")


def test_where_sort_summary_and_export_take_metric_fields(peaked_run: int) -> None:
    where = ["--where", "best_val_token_accuracy > 0.7 and val_exact_match < 0.2"]
    assert [
        r["id"]
        for r in _json(["runs", "list", *where, "--sort", "best_metric:desc", "--format", "json"])
    ] == [peaked_run]
    assert _json(["runs", "list", "--where", "val_exact_match >= 0.9", "--format", "json"]) == []
    [group] = _json(
        [
            "runs",
            "summary",
            "--group-by",
            "task",
            "--metric",
            "val_token_accuracy_t[2]",
            "--format",
            "json",
        ]
    )
    assert (group["count"], group["mean"]) == (1, 0.625)
    exported = _json(["export", "--metrics", "--format", "json", "--where", "best_epoch = 2"])
    assert len(exported) == 24 and exported[0]["run_id"] == peaked_run
    assert set(exported[0]) == {"run_id", "epoch", "split", "name", "timestep", "value"}
    long = CliRunner().invoke(cli, ["export", "--metrics", "--where", "best_epoch = 3"])
    assert long.exit_code == 0 and long.output == "run_id,epoch,split,name,timestep,value\n"
    for args, message in (
        (
            ["runs", "list", "--where", "val_f1 > 0.5"],
            "unknown metric 'f1' in 'val_f1' at position 1",
        ),
        (["runs", "list", "--sort", "best_val_top1"], "--sort: unknown metric 'top1'"),
        (
            ["runs", "summary", "--group-by", "task", "--metric", "train_f1"],
            "--metric: unknown metric 'f1'",
        ),
        (["export", "--metrics", "--losses"], "give --losses or --metrics, not both"),
    ):
        bad = CliRunner().invoke(cli, args)
        assert bad.exit_code == 2 and message in bad.output, bad.output
        assert "Traceback" not in bad.output and len(bad.output.strip().splitlines()) == 1


def test_runs_plot_draws_the_metrics_and_stars_the_best_epoch(peaked_run: int) -> None:
    from service.commands.common import open_engine
    from service.metrics_read import get_metrics
    from service.plots import draw_runs
    from service.store import get_losses, get_run

    engine = open_engine()
    run = get_run(engine, peaked_run)
    figure = draw_runs([(run, get_losses(engine, run.id), get_metrics(engine, run.id))])
    by_epoch, by_metric, _ = figure.axes
    curves = {line.get_label(): line for line in by_metric.lines}
    val = curves[f"run {run.id} (val token_accuracy)"]
    assert list(val.get_xdata()) == [1, 2, 3] and list(val.get_ydata()) == [0.5, 0.75, 0.625]
    assert f"run {run.id} (train exact_match)" in curves
    star = curves[f"run {run.id}: best epoch 2"]
    assert (list(star.get_xdata()), list(star.get_ydata())) == ([2], [0.75])
    starred = [line for line in by_epoch.lines if line.get_marker() == "*"]
    assert [(list(s.get_xdata()), list(s.get_ydata())) for s in starred] == [([2], [1.0])]


def test_the_collector_is_off_only_while_a_command_loads() -> None:
    probe = (
        "import gc, sys\nfrom service import cli\n"
        "seen = []\n"
        "real = cli.LazyGroup.get_command\n"
        "def spy(self, ctx, name):\n"
        "    seen.append(gc.isenabled())\n"
        "    return real(self, ctx, name)\n"
        "cli.LazyGroup.get_command = spy\n"
        "sys.argv = ['expq', 'runs', 'list', '--help']\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print(seen[0], gc.isenabled())\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.split()[-2:] == ["False", "True"], result.stderr
