"""The JSON API against a real `expq ui` process, on SQLite and PostgreSQL: the CLI's JSON,
the parser's errors, pages that add up, and nothing that writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from ui_support import EPOCHS, TIMESTEPS, UiServer, fill_sweep, step_losses

WHERE = "lr < 0.2 and (model = 'rnn' or tag.team = 'a') and val_loss_t[2] < 2"


@pytest.fixture
def served(database_url: str, ui_server: Callable[..., UiServer]) -> tuple[UiServer, dict]:
    from service.db import get_engine

    runs = fill_sweep(get_engine(database_url))
    return ui_server(database_url), runs


def _cli_json(tmp_path: Path, database_url: str, *args: str) -> object:
    """What `expq ARGS` prints, through the real CLI in this process (no process start)."""
    from click.testing import CliRunner

    from service.cli import cli

    env = {"EXPQ_DATABASE_URL": database_url, "EXPQ_HOME": str(tmp_path / "home")}
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_runs_are_what_runs_list_prints(
    served: tuple[UiServer, dict], tmp_path: Path, database_url: str
) -> None:
    server, _ = served
    for where, sort in ((WHERE, "final_val_loss:asc"), ("hidden in (16, 64)", "lr:desc")):
        answer = server.get(f"/api/runs?where={quote(where)}&sort={quote(sort)}&limit=20")
        assert answer.status == 200
        expected = _cli_json(
            tmp_path, database_url, "runs", "list", "--where", where, "--sort", sort,
            "--limit", "20", "--format", "json",
        )  # fmt: skip
        assert answer.json() == expected
        assert expected  # the filter matched something: the comparison means something


def test_pages_of_runs_add_up_to_the_whole_list(served: tuple[UiServer, dict]) -> None:
    server, _ = served
    for sort in ("id:desc", "final_val_loss:asc", "val_loss_t[1]:desc", "tag.team"):
        whole = [run["id"] for run in server.get(f"/api/runs?sort={quote(sort)}").json()]
        assert len(whole) == 8
        pages = [
            run["id"]
            for offset in range(0, 8, 3)
            for run in server.get(f"/api/runs?sort={quote(sort)}&limit=3&offset={offset}").json()
        ]
        assert pages == whole, sort


def test_the_runs_page_counts_facets_past_id_46341(
    database_url: str, ui_server: Callable[..., UiServer]
) -> None:
    from sqlalchemy import text

    from service.db import get_engine

    engine = get_engine(database_url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("ALTER SEQUENCE runs_run_id_seq RESTART WITH 60000"))
    runs = fill_sweep(engine)
    server = ui_server(database_url)
    page = server.get("/?status=succeeded")
    assert page.status == 200, page.text
    assert f'data-id="{runs["finished"][0]}"' in page.text
    assert '<span class="count">6</span>' in page.text  # succeeded, beside running and queued


def test_a_bad_filter_is_a_400_with_the_parsers_message(served: tuple[UiServer, dict]) -> None:
    server, _ = served
    answer = server.get(f"/api/runs?where={quote('lr < 0.1 and')}")
    assert answer.status == 400
    assert answer.json() == {
        "error": "--where: expected a field, got end of expression at position 13"
    }
    assert server.get("/api/runs?sort=nonsense").status == 400
    page = server.get(f"/?where={quote('tag.x = 1 <script>alert(1)</script>')}")
    assert page.status == 400 and "at position 28" in page.text
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(1)" in page.text
    assert "limit" in server.get("/api/runs?limit=-1").json()["error"]


def test_one_run_its_losses_and_the_summary(
    served: tuple[UiServer, dict], tmp_path: Path, database_url: str
) -> None:
    server, runs = served
    first = runs["finished"][0]
    assert (
        server.get(f"/api/runs/{first}").json()
        == _cli_json(
            tmp_path, database_url, "runs", "list", "--where", f"id = {first}", "--format", "json"
        )[0]
    )
    assert server.get("/api/runs/999").status == 404
    losses = server.get(f"/api/runs/{first}/losses").json()
    assert losses["epochs"] == EPOCHS and losses["timesteps"] == list(range(1, TIMESTEPS + 1))
    assert not losses["downsampled"]
    train = losses["splits"]["train"]
    assert train["L_t"]["2"]["value"] == [step_losses(0.01, e)[1] for e in range(1, EPOCHS + 1)]
    assert train["L"]["value"] == pytest.approx(
        [sum(step_losses(0.01, e)) for e in range(1, EPOCHS + 1)]
    )
    assert len(train["heatmap"]["z"]) == TIMESTEPS
    summary = server.get("/api/experiments/sweep/summary?group_by=hidden&metric=best_val_loss")
    assert summary.json() == _cli_json(
        tmp_path, database_url, "runs", "summary", "--experiment", "sweep",
        "--group-by", "hidden", "--metric", "best_val_loss", "--format", "json",
    )  # fmt: skip
    assert server.get("/api/experiments/nope/summary").status == 404
    assert server.get("/api/experiments/sweep/summary?group_by=bogus").status == 400


def test_no_endpoint_changes_the_database(
    served: tuple[UiServer, dict], tmp_path: Path, database_url: str
) -> None:
    server, runs = served
    before = _cli_json(tmp_path, database_url, "export", "--format", "json", "--losses")
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/", f"/runs/{runs['running']}", "/api/runs", f"/api/runs/{runs['queued']}"):
            assert server.get(path, method=method).status == 405, (method, path)
    assert _cli_json(tmp_path, database_url, "export", "--format", "json", "--losses") == before


def test_a_down_broker_shows_as_down(served: tuple[UiServer, dict]) -> None:
    server, _ = served
    fleet = server.get("/api/workers").json()
    assert fleet["up"] is False and fleet["workers"] == []
    assert fleet["broker"] == "redis://127.0.0.1:1/0" and fleet["error"]
    page = server.get("/workers")
    assert page.status == 200 and "workers" in page.text
