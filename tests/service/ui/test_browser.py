"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a real
`expq ui` process over SQLite (the API tests cover PostgreSQL).

Chromium missing is an error, not a skip: .ci/run installs it (apt-get install chromium).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from playwright import sync_api as playwright_api
from support import expq_env, poll
from ui_support import EPOCHS, TIMESTEPS, UiServer, fill_sweep, make_run, record

WHERE = "lr < 0.2 and (model = 'rnn' or tag.team = 'a') and val_loss_t[2] < 2"
LONG_EPOCHS = 600


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One `expq ui` over a SQLite store: the sweep, and a run of LONG_EPOCHS epochs."""
    from service.db import get_engine
    from service.lifecycle import claim_run, finish_run

    tmp_path = tmp_path_factory.mktemp("ui")
    url = f"sqlite:///{tmp_path / 'expq.db'}"
    engine = get_engine(url)
    runs = fill_sweep(engine)
    long_run = make_run(engine, "long", lr=0.05, hidden=16, seed=9, epochs=LONG_EPOCHS)
    attempt = claim_run(engine, long_run, owner="o", worker="w", device="cpu", lease_seconds=600)
    for epoch in range(1, LONG_EPOCHS + 1):
        record(engine, long_run, attempt, epoch, 0.05)
    finish_run(engine, long_run, attempt, "succeeded")
    server = UiServer(expq_env(tmp_path, url, "redis://127.0.0.1:1/0"))
    yield {"server": server, "engine": engine, "long": long_run, **runs}
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium", pytrace=False)
    with playwright_api.sync_playwright() as playwright:
        # SwiftShader: WebGL without a GPU, for plotly's parallel coordinates.
        launched = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--enable-unsafe-swiftshader"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    """A fresh page that records every request and every script error; after the test, every
    request must have gone to 127.0.0.1 and no script may have failed."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.requests = []
    opened.errors = []
    opened.on("request", lambda request: opened.requests.append(request.url))
    opened.on("pageerror", lambda error: opened.errors.append(str(error)))
    yield opened
    context.close()
    assert opened.errors == []
    assert {urlsplit(url).hostname for url in opened.requests} <= {"127.0.0.1"}


def _ids(page: Any, rows: str) -> list[int]:
    return [int(i) for i in page.locator(rows).evaluate_all("rs => rs.map(r => r.dataset.id)")]


def _traces(page: Any, chart: str) -> list[dict]:
    return page.evaluate(
        f"document.getElementById('{chart}').data.map(t => "
        "({name: t.name, type: t.type || 'scatter', x: t.x, y: t.y, z: t.z}))"
    )


def _drawn(page: Any, count: int = 1) -> None:
    page.wait_for_function(f"Number(document.body.dataset.drawn || 0) >= {count}")


def test_typing_a_filter_narrows_the_table_to_the_apis_runs(
    site: dict, page: Any, tmp_path: Path
) -> None:
    server: UiServer = site["server"]
    page.goto(server.url + "/")
    assert len(_ids(page, "#runs tbody tr")) == 9
    page.fill("input[name=where]", WHERE)
    with page.expect_navigation():
        page.press("input[name=where]", "Enter")
    expected = [run["id"] for run in server.get(f"/api/runs?where={quote(WHERE)}").json()]
    assert 0 < len(expected) < 9
    assert _ids(page, "#runs tbody tr") == expected
    page.screenshot(path=tmp_path / "runs.png", full_page=True)


def test_a_bad_filter_shows_the_parsers_message(site: dict, page: Any, tmp_path: Path) -> None:
    server: UiServer = site["server"]
    page.goto(server.url + "/")
    page.fill("input[name=where]", "lr < 0.1 and (hidden = 16")
    with page.expect_navigation():
        page.press("input[name=where]", "Enter")
    message = server.get(f"/api/runs?where={quote('lr < 0.1 and (hidden = 16')}").json()["error"]
    assert message == "--where: expected ')', got end of expression at position 26"
    assert page.text_content("#filter-error") == message
    page.screenshot(path=tmp_path / "bad-filter.png")


def test_a_run_page_draws_l_every_l_t_and_a_heatmap(site: dict, page: Any, tmp_path: Path) -> None:
    run_id = site["finished"][0]
    page.goto(f"{site['server'].url}/runs/{run_id}")
    _drawn(page)
    losses = site["server"].get(f"/api/runs/{run_id}/losses").json()["splits"]
    total = _traces(page, "chart-total")
    assert [t["name"] for t in total[:2]] == ["train L", "val L"]
    assert total[1]["y"] == losses["val"]["L"]["value"] and len(total[1]["x"]) == EPOCHS
    assert total[2]["name"] == f"best val L (epoch {EPOCHS})"
    steps = _traces(page, "chart-steps")
    assert [t["name"] for t in steps] == [f"L_{t}" for t in range(1, TIMESTEPS + 1)]
    assert [t["y"] for t in steps] == [losses["val"]["L_t"][str(t)]["value"] for t in (1, 2, 3)]
    page.select_option("#lt-split", "train")
    assert _traces(page, "chart-steps")[0]["y"] == losses["train"]["L_t"]["1"]["value"]
    for split in ("train", "val"):
        [heat] = _traces(page, f"heatmap-{split}")
        assert heat["type"] == "heatmap" and heat["z"] == losses[split]["heatmap"]["z"]
        assert len(heat["z"]) == TIMESTEPS and len(heat["z"][0]) == EPOCHS
    assert page.locator("#chart-total .scatterlayer .trace").count() == 3
    assert page.locator("#heatmap-val .hm image").count() == 1
    assert page.is_hidden("#downsampled")
    page.screenshot(path=tmp_path / "run.png", full_page=True)


def test_a_long_run_is_downsampled_on_the_server_and_says_so(site: dict, page: Any) -> None:
    page.goto(f"{site['server'].url}/runs/{site['long']}")
    _drawn(page)
    note = page.text_content("#downsampled")
    assert f"{LONG_EPOCHS} epochs drawn as buckets of 3 epochs" in note
    assert "min and max" in note
    train = _traces(page, "chart-total")[0]
    assert len(train["x"]) <= 500 and train["x"][0] == 1
    assert min(train["y"]) == pytest.approx(sum(0.1 * t + 1.5 / LONG_EPOCHS for t in (1, 2, 3)))


def test_compare_overlays_the_chosen_runs(site: dict, page: Any, tmp_path: Path) -> None:
    chosen = site["finished"][:3]
    page.goto(site["server"].url + "/")
    for run_id in chosen:
        page.check(f"tr[data-id='{run_id}'] input.pick")
    with page.expect_navigation():
        page.click("#compare")
    assert page.url.endswith("/compare?ids=" + ",".join(str(i) for i in sorted(chosen)[::-1]))
    _drawn(page)
    shown = {t["name"]: t["y"] for t in _traces(page, "chart-val")}
    assert set(shown) == {f"run {i}" for i in chosen}
    for run_id in chosen:
        losses = site["server"].get(f"/api/runs/{run_id}/losses").json()
        assert shown[f"run {run_id}"] == losses["splits"]["val"]["L"]["value"]
    differing = page.locator("#differing tbody th").all_text_contents()
    assert differing == ["hidden", "lr", "seed", "data_seed", "tag.team"]
    page.screenshot(path=tmp_path / "compare.png", full_page=True)


def test_a_range_on_a_parallel_axis_narrows_the_run_list(
    site: dict, page: Any, tmp_path: Path
) -> None:
    page.goto(site["server"].url + "/experiments/sweep")
    _drawn(page)
    everyone = _ids(page, "#experiment-runs tbody tr")
    assert sorted(everyone) == sorted(site["finished"])
    labels = page.evaluate(
        "document.getElementById('chart-parcoords').data[0].dimensions.map(d => d.label)"
    )
    assert labels == ["model", "hidden", "lr", "final_val_loss"]
    page.locator("#chart-parcoords").scroll_into_view_if_needed()
    axis = page.locator("#chart-parcoords .axis-brush .background").nth(3).bounding_box()
    x = axis["x"] + axis["width"] / 2
    page.mouse.move(x, axis["y"] + axis["height"] * 0.55)  # the lower half: the better runs
    page.mouse.down()
    page.mouse.move(x, axis["y"] + axis["height"] * 0.999, steps=10)
    page.mouse.up()
    low, high = poll(
        lambda: page.evaluate(
            "document.getElementById('chart-parcoords').data[0].dimensions[3].constraintrange"
        ),
        10,
        "a range on the objective axis",
    )
    runs = {r["id"]: r for r in site["server"].get("/api/runs?where=experiment%3D'sweep'").json()}
    expected = [i for i in everyone if low <= runs[i]["final_val_loss"] <= high]
    poll(lambda: _ids(page, "#experiment-runs tbody tr") == expected, 10, "the narrowed list")
    assert 0 < len(expected) < len(everyone)
    page.screenshot(path=tmp_path / "experiment.png", full_page=True)


def test_a_running_run_lives_on_its_page_and_in_the_table(site: dict, page: Any) -> None:
    from service.lifecycle import finish_run

    engine, run_id, attempt = site["engine"], site["running"], site["attempt"]
    page.goto(f"{site['server'].url}/runs/{run_id}")
    _drawn(page)
    assert page.text_content("#epochs") == f"1/{EPOCHS}"
    record(engine, run_id, attempt, 2, 0.2)
    page.wait_for_function(f"document.getElementById('epochs').textContent === '2/{EPOCHS}'")
    poll(lambda: len(_traces(page, "chart-total")[0]["x"]) == 2, 10, "the new epoch drawn")
    table = page.context.new_page()
    table.goto(site["server"].url + "/?experiment=live")
    assert table.text_content(f"tr[data-id='{run_id}'] [data-field=status]") == "running"
    finish_run(engine, run_id, attempt, "succeeded")
    for seen in (page.locator("#status"), table.locator(f"tr[data-id='{run_id}'] .status")):
        playwright_api.expect(seen).to_have_text("succeeded", timeout=10_000)
    table.close()


def test_no_request_leaves_127_0_0_1(site: dict, page: Any) -> None:
    base = site["server"].url
    for path in ("/", f"/runs/{site['long']}", "/compare?ids=1,2", "/experiments/sweep"):
        page.goto(base + path)
        if path != "/":
            _drawn(page)
    page.goto(base + "/workers")
    page.wait_for_function("document.body.dataset.refreshes")
    assert "down" in page.text_content("#broker")
    hosts = {urlsplit(url).hostname for url in page.requests}
    assert hosts == {"127.0.0.1"}
    assert any(url.endswith("/static/plotly.min.js") for url in page.requests)
    assert any("/api/runs/" in url for url in page.requests)
