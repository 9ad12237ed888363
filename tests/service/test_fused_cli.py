"""The CLI's side of fused groups: `expq worker --fuse` validated, a run's JSON `group`, and
`runs show` naming the runs that trained beside it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from models.spec import spec_from_dict
from service.cli import cli
from service.db import get_engine
from service.lifecycle import claim_group
from service.store import NewRun, create_run


@pytest.mark.parametrize("fuse", ["0", "65", "two"])
def test_a_bad_fuse_is_one_line_and_exit_2(fuse: str) -> None:
    result = CliRunner().invoke(cli, ["worker", "--fuse", fuse])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--fuse'" in result.output


def test_a_run_names_its_group_and_show_lists_the_runs_beside_it(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPQ_DATABASE_URL", sqlite_url)
    engine = get_engine(sqlite_url)
    runs = []
    for lr in (0.1, 0.2, 0.3):
        spec = spec_from_dict({"task": "binary", "model": "mlp", "lr": lr, "data_seed": 0})
        runs.append(create_run(engine, spec.to_dict(), spec.params(), NewRun("e", "cpu")).id)
    alone = create_run(engine, spec.to_dict() | {"hidden": 5}, spec.params(), NewRun("e", "cpu"))
    claim_group(
        engine, runs[1], size=4, group="g1", owner="h:1:t", worker="w", auto_device="cpu",
        lease_seconds=30,
    )  # fmt: skip

    shown = CliRunner().invoke(cli, ["runs", "show", str(runs[1]), "--format", "json"])
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.output)
    assert (detail["group"], detail["trained_beside"]) == ("g1", [runs[0], runs[2]])
    listed = CliRunner().invoke(cli, ["runs", "list", "--format", "json"])
    assert {run["id"]: run["group"] for run in json.loads(listed.output)} == {
        **dict.fromkeys(runs, "g1"), alone.id: None,
    }  # fmt: skip
    table = CliRunner().invoke(cli, ["runs", "show", str(runs[0])])
    assert f"{runs[1]}, {runs[2]}" in table.output and "g1" in table.output


def test_seed_replicates_sharing_a_data_seed_share_a_fusion_key(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import select

    from service.schema import Run

    monkeypatch.setenv("EXPQ_DATABASE_URL", sqlite_url)
    swept = CliRunner().invoke(
        cli,
        ["sweep", "--task", "binary", "--model", "mlp", "--seeds", "3", "--data-seed", "4",
         "--dry-run", "--json"],
    )  # fmt: skip
    assert swept.exit_code == 0, swept.output
    planned = json.loads(swept.output)
    assert [(run["seed"], run["data_seed"]) for run in planned] == [(0, 4), (1, 4), (2, 4)]
    engine = get_engine(sqlite_url)
    for seed in (1, 2):
        spec = spec_from_dict({"task": "binary", "model": "mlp", "seed": seed, "data_seed": 4})
        create_run(engine, spec.to_dict(), spec.params(), NewRun("e", "cpu"))
    with engine.connect() as connection:
        assert len(set(connection.scalars(select(Run.fusion_key)))) == 1
