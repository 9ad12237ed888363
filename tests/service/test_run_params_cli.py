"""What a run ran on, as a user sees it: submit with --data, then list, compare, summary."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from support import expq_env, run_cli


def _json(env: dict[str, str], *args: str):  # noqa: ANN202
    result = run_cli(env, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_runs_say_what_data_they_ran_on(tmp_path: Path, database_url: str, redis_url: str) -> None:
    env = expq_env(tmp_path, database_url, redis_url)
    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(
            json.dumps({"input": [i / 10, 1 - i / 10], "target": i % 2}) + "\n" for i in range(12)
        )
    )
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    common = ("submit", "--task", "binary", "--epochs", "1", "--json")
    on_file = _json(env, *common, "--model", "mlp", "--data", str(data), "--patience", "2")
    built_in = _json(env, *common, "--model", "rnn", "--cell", "lstm", "--seq-len", "4")
    params = on_file["params"]
    assert (params["data"], params["patience"], params["grad_clip"]) == (digest, 2, 1.0)
    assert not {"cell", "seq_len", "samples", "time_limit"} & set(params)
    assert built_in["params"]["seq_len"] == 4 and "activation" not in built_in["params"]

    where = f"data = '{digest}' and patience >= 2"
    assert [r["id"] for r in _json(env, "runs", "list", "--where", where, "--format", "json")] == [
        on_file["id"]
    ]
    shown = _json(env, "runs", "show", str(on_file["id"]), "--format", "json")
    assert shown["params"] == params

    ids = (str(on_file["id"]), str(built_in["id"]))
    compared = _json(env, "runs", "compare", *ids, "--format", "json")
    rows = {row["field"]: row for row in compared["rows"]}
    assert rows["data"]["values"] == [digest, None] and rows["data"]["differs"]
    table = run_cli(env, "runs", "compare", *ids)
    assert table.returncode == 0, table.stderr
    line = next(line for line in table.stdout.splitlines() if " data " in line)
    assert "≠" in line and f"{digest[:12]}…" in line and digest not in line

    groups = _json(
        env, "runs", "summary", "--group-by", "cell", "--metric", "lr", "--format", "json"
    )
    assert [(g["cell"], g["runs"]) for g in groups] == [("lstm", 1), (None, 1)]
    summary = run_cli(env, "runs", "summary", "--group-by", "cell", "--metric", "lr")
    assert "lr by cell (std: sample, n - 1)" in summary.stdout


def test_runs_record_the_data_seed_they_drew_their_data_with(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """data_seed is a param like the others: the seed when unset, absent when there is
    nothing to draw (--data and --val-data both given)."""
    env = expq_env(tmp_path, database_url, redis_url)
    rows = "".join(json.dumps({"input": [i / 10], "target": i % 2}) + "\n" for i in range(6))
    (tmp_path / "train.jsonl").write_text(rows)
    (tmp_path / "val.jsonl").write_text(rows)
    common = ("submit", "--task", "binary", "--model", "mlp", "--epochs", "1", "--json")
    by_default = _json(env, *common, "--seed", "0")
    given = _json(env, *common, "--seed", "1", "--data-seed", "0")
    other = _json(env, *common, "--seed", "2")
    files = ("--data", str(tmp_path / "train.jsonl"), "--val-data", str(tmp_path / "val.jsonl"))
    on_files = _json(env, *common, "--seed", "0", *files)
    assert [run["params"].get("data_seed") for run in (by_default, given, other, on_files)] == [
        0, 0, 2, None,
    ]  # fmt: skip

    listed = _json(env, "runs", "list", "--where", "data_seed = 0", "--format", "json")
    assert sorted(run["id"] for run in listed) == [by_default["id"], given["id"]]
    groups = _json(
        env, "runs", "summary", "--group-by", "data_seed", "--metric", "seed", "--format", "json"
    )
    assert sorted((g["data_seed"], g["runs"]) for g in groups if g["data_seed"] is not None) == [
        (0, 2), (2, 1),
    ]  # fmt: skip
