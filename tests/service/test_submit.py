"""`expq submit` checks every data file a run will train on before anything is stored."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from support import assert_nothing_written, expq_env, run_cli

SENTIMENT = '{"input": ["good", "film"], "target": 1}\n{"input": ["bad", "film"], "target": 0}\n'
BINARY = '{"input": [1, 2], "target": 0}\n{"input": [3, 4], "target": 1}\n'


def _refused(result, message: str) -> None:  # noqa: ANN001 - a CompletedProcess
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"Error: {message}\n"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            '{"input": [1, 2], "target": 0}\n{"input": [1e308, 2], "target": 1}\n',
            "train.jsonl line 2: input must contain numbers within +-3.403e+38 (float32); "
            "found 1e+308 (task binary takes a list of numbers)",
        ),
        (
            '{"input": [1, 2], "target": 1}\n{"input": [3, 4], "target": 0}\n'
            '{"input": [5, 6], "target": "1"}\n',
            "train.jsonl line 3: label '1' (a string) and line 1's label 1 (a number) would be "
            "two classes that print alike; write each label one way",
        ),
        (
            "".join(json.dumps({"input": [0.5] * 600, "target": k}) + "\n" for k in (0, 1)),
            "train.jsonl line 1: input has 600 numbers; task binary takes at most 512 "
            "(its seq_len limit)",
        ),
    ],
)
def test_data_that_cannot_train_is_refused_at_submit(
    tmp_path: Path, embedded_broker_url: str, rows: str, message: str
) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text(rows)
    env = expq_env(tmp_path, f"sqlite:///{tmp_path / 'expq.db'}", embedded_broker_url)
    result = run_cli(env, "submit", "--task", "binary", "--model", "mlp", "--data", str(data))
    _refused(result, message)
    assert_nothing_written(tmp_path, embedded_broker_url)


def test_val_data_goes_through_the_same_checks(tmp_path: Path, embedded_broker_url: str) -> None:
    data, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    data.write_text(BINARY)
    env = expq_env(tmp_path, f"sqlite:///{tmp_path / 'expq.db'}", embedded_broker_url)
    submit = ("submit", "--task", "binary", "--model", "mlp", "--data", str(data))
    val.write_text('{"input": [1, 2], "target": 0}\n{"input": [1, -1e39], "target": 1}\n')
    _refused(
        run_cli(env, *submit, "--val-data", str(val)),
        "val.jsonl line 2: input must contain numbers within +-3.403e+38 (float32); "
        "found -1e+39 (task binary takes a list of numbers)",
    )
    val.write_text('{"input": [1, 2], "target": "0"}\n{"input": [3, 4], "target": "1"}\n')
    _refused(
        run_cli(env, *submit, "--val-data", str(val)),
        "val.jsonl line 1: label '0' (a string) and train.jsonl line 1's label 0 (a number) "
        "would be two classes that print alike; write each label one way",
    )
    assert_nothing_written(tmp_path, embedded_broker_url)


def _stored_sentiment_run(database_url: str, tmp_path: Path) -> int:
    """A queued sentiment run on a user's data file, stored without a message."""
    from service.db import get_engine
    from service.store import NewRun, create_run, save_dataset
    from service.submit import prepare_spec

    data = tmp_path / "sentiment.jsonl"
    data.write_text(SENTIMENT)
    spec, files = prepare_spec({"task": "sentiment", "model": "rnn"}, data, None)
    engine = get_engine(database_url)
    for digest, content in files.items():
        save_dataset(engine, digest, content)
    return create_run(engine, spec.to_dict(), spec.params(), NewRun("src", "auto")).id


def test_from_run_checks_the_stored_data_against_the_new_task(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    from service.db import get_engine
    from service.store import list_runs

    source = _stored_sentiment_run(database_url, tmp_path)
    env = expq_env(tmp_path, database_url, redis_url)
    result = run_cli(env, "submit", "--from-run", str(source), "--task", "binary")
    _refused(
        result,
        f"run {source}'s data line 1: input must be a list of numbers; found 'good' "
        "(task binary takes a list of numbers)",
    )
    assert [run.id for run in list_runs(get_engine(database_url))] == [source]
    assert redis.Redis.from_url(redis_url).dbsize() == 0

    again = run_cli(env, "submit", "--from-run", str(source), "--lr", "0.05", "--json")
    assert again.returncode == 0, again.stderr
    run = json.loads(again.stdout)
    assert run["spec"]["data"] == hashlib.sha256(SENTIMENT.encode()).hexdigest()
    assert (run["experiment"], run["params"]["lr"], run["status"]) == ("src", 0.05, "queued")


def test_from_run_checks_new_val_data_against_the_stored_data(
    tmp_path: Path, sqlite_url: str, embedded_broker_url: str
) -> None:
    source = _stored_sentiment_run(sqlite_url, tmp_path)
    val = tmp_path / "val.jsonl"
    val.write_text('{"input": ["fine"], "target": "1"}\n{"input": ["meh"], "target": "0"}\n')
    env = expq_env(tmp_path, sqlite_url, embedded_broker_url)
    result = run_cli(env, "submit", "--from-run", str(source), "--val-data", str(val))
    _refused(
        result,
        f"val.jsonl line 1: label '1' (a string) and run {source}'s data line 1's label 1 "
        "(a number) would be two classes that print alike; write each label one way",
    )
    assert redis.Redis.from_url(embedded_broker_url).dbsize() == 0


def test_from_run_and_sweep_checks_never_import_torch(
    tmp_path: Path, sqlite_url: str, embedded_broker_url: str
) -> None:
    source = _stored_sentiment_run(sqlite_url, tmp_path)
    env = expq_env(tmp_path, sqlite_url, embedded_broker_url)
    probe = (
        "import sys\nfrom service.cli import cli\n"
        f"for args in (['submit', '--from-run', '{source}', '--lr', '0.05'],"
        " ['sweep', '--task', 'binary', '--model', 'mlp', '--hidden', '8,16', '--dry-run']):\n"
        "    cli.main(args, standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
