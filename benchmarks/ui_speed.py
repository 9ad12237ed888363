"""Dashboard latency at scale: 100,000 runs and ~10.9M loss rows (benchmarks.store_query's
generator), plus one run of 1,000 epochs x 64 timesteps, served by a real `expq ui` process.

Run from the repository root: python -m benchmarks.ui_speed [--runs N] [--backends sqlite,...]
Writes benchmarks/results/ui_speed.md. Each URL is fetched over HTTP from this process: the
median of 5 after one warm-up. The run page is also timed in Debian's chromium (Playwright),
from navigation until its charts are drawn.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

from benchmarks.store_common import RESULTS, machine, median_ms, pg_database, table
from benchmarks.store_query import BOTH_WHERE, LIST_WHERE, STEP_WHERE, load_postgresql, load_sqlite

LONG_EPOCHS = 1_000
LONG_TIMESTEPS = 64


def add_long_run(url: str) -> int:
    """A finished run of LONG_EPOCHS epochs x LONG_TIMESTEPS timesteps, written by the real
    store and lifecycle functions, one batched insert an epoch as a worker writes."""
    import math

    from models.spec import spec_from_dict
    from service.db import get_engine
    from service.lifecycle import claim_run, finish_run, record_epoch
    from service.store import NewRun, create_run

    engine = get_engine(url)
    spec = spec_from_dict(
        {"task": "translation", "model": "rnn", "epochs": LONG_EPOCHS, "seq_len": LONG_TIMESTEPS}
    )
    run_id = create_run(engine, spec.to_dict(), spec.params(), NewRun("long", "cpu")).id
    attempt = claim_run(engine, run_id, owner="b", worker="b", device="cpu", lease_seconds=3600)
    for epoch in range(1, LONG_EPOCHS + 1):
        splits = {}
        for split, scale in (("train", 1.0), ("val", 1.2)):
            steps = [
                scale * (0.1 + t / LONG_TIMESTEPS) * (1 + math.sin(epoch * 0.37 + t)) / epoch**0.3
                for t in range(1, LONG_TIMESTEPS + 1)
            ]
            splits[split] = SimpleNamespace(total=sum(steps), per_timestep=steps, metric=0.5)
        record_epoch(engine, run_id, attempt, epoch, splits)
    finish_run(engine, run_id, attempt, "succeeded")
    return run_id


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return answer.read()


def serve(url: str, home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "EXPQ_DATABASE_URL": url, "EXPQ_HOME": str(home)}
    with (home / "ui.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "ui", "--port", str(port)], env=env, stderr=log
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            fetch(base + "/static/dashboard.css")
            return process, base
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("expq ui did not start") from None
            time.sleep(0.2)


def browser_ms(page_url: str) -> tuple[float, float] | None:
    """(first visit, median of 5 later visits) in ms until the run page's charts are drawn."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        times = []
        for _ in range(6):
            start = time.perf_counter()
            page.goto(page_url)
            page.wait_for_function("document.body.dataset.drawn")
            times.append((time.perf_counter() - start) * 1000)
        browser.close()
    return times[0], sorted(times[1:])[2]


def measure(url: str, home: Path, long_id: int) -> list[list[object]]:
    process, base = serve(url, home)
    try:
        rows = []
        listings = [
            (LIST_WHERE, "final_val_loss", 0),
            (STEP_WHERE, "final_val_loss", 0),
            (BOTH_WHERE, "final_val_loss", 0),
            (LIST_WHERE, "lr:desc", 0),
            (LIST_WHERE, "final_val_loss", 1_000),
        ]
        for where, sort, offset in listings:
            path = f"/api/runs?where={quote(where)}&sort={quote(sort)}&limit=50"
            path += f"&offset={offset}" if offset else ""
            ms = median_ms(lambda p=path: fetch(base + p))
            shown = f"`/api/runs?where={where}&sort={sort}&limit=50"
            shown += f"&offset={offset}`" if offset else "`"
            rows.append([shown, f"{ms:.1f}", "< 200 ms", "yes" if ms < 200 else "**no**"])
        page = median_ms(lambda: fetch(f"{base}/runs/{long_id}"))
        start = time.perf_counter()
        body = fetch(f"{base}/api/runs/{long_id}/losses")
        cold = (time.perf_counter() - start) * 1000
        warm = median_ms(lambda: fetch(f"{base}/api/runs/{long_id}/losses"))
        data = json.loads(body)
        rows.append(
            [f"`/runs/{long_id}` (the page's HTML)", f"{page:.1f}", "(with the next rows)", ""]
        )
        shape = (
            f"{LONG_EPOCHS} epochs x {LONG_TIMESTEPS} timesteps x 2 splits, "
            f"{len(body) / 1024:.0f} KiB, L bucket {data['bucket']}"
        )
        for label, ms in (("first request: the database", cold), ("later: kept", warm)):
            rows.append(
                [
                    f"`/api/runs/{long_id}/losses` ({shape}), {label}",
                    f"{ms:.1f}",
                    "page + losses < 1 s",
                    "yes" if page + ms < 1000 else "**no**",
                ]
            )
        drawn = browser_ms(f"{base}/runs/{long_id}")
        if drawn is not None:
            first, later = drawn
            verdict = "yes" if later < 1000 else "**no**"
            rows.append(
                [
                    f"`/runs/{long_id}` in chromium until every chart is drawn "
                    f"(first visit {first:.0f} ms)",
                    f"{later:.0f}",
                    "< 1 s",
                    verdict,
                ]
            )
        for path in (f"/?where={quote(LIST_WHERE)}&sort=final_val_loss", "/experiments/exp1"):
            ms = median_ms(lambda p=path: fetch(base + p))
            rows.append([f"`{path}` (HTML, facets / summary)", f"{ms:.1f}", "(no target)", ""])
        rows.append(
            [
                f"for comparison: `store.get_losses` on run {long_id} (ORM rows)",
                f"{store_losses_ms(url, long_id):.1f}",
                "(why service/ui/queries.py)",
                "",
            ]
        )
        return rows
    except Exception:
        print((home / "ui.log").read_text(errors="replace")[-5000:], file=sys.stderr)
        raise
    finally:
        process.terminate()
        process.wait(10)


def store_losses_ms(url: str, run_id: int) -> float:
    from service.db import get_engine
    from service.store import get_losses

    engine = get_engine(url, create=False)
    return median_ms(lambda: get_losses(engine, run_id), repeat=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    lines = [
        "# Dashboard latency",
        "",
        *machine(f"python -m benchmarks.ui_speed --runs {args.runs} --backends {args.backends}"),
        "",
        "A real `expq ui` process; each URL fetched over HTTP from the benchmark process, the "
        "median of 5 after one warm-up. The data is benchmarks.store_query's (20 experiments "
        "of 5,000 runs, 10 epochs each, T = 1 or 8) plus one run of 1,000 epochs x 64 "
        "timesteps written through `record_epoch`.",
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="expq-ui-bench-") as folder:
        home = Path(folder)
        for backend in args.backends.split(","):
            print(f"loading {args.runs} runs into {backend} ...", flush=True)
            begin = time.perf_counter()
            if backend == "sqlite":
                path = home / "big.db"
                rows = load_sqlite(path, args.runs)
                url = f"sqlite:///{path}"
                long_id = add_long_run(url)
                loaded = time.perf_counter() - begin
                results = measure(url, home, long_id)
            else:
                with pg_database("expq_bench_ui") as url:
                    rows = load_postgresql(url, args.runs)
                    long_id = add_long_run(url)
                    loaded = time.perf_counter() - begin
                    results = measure(url, home, long_id)
            rows += LONG_EPOCHS * 2 * (LONG_TIMESTEPS + 1)
            print(f"{backend}: {rows:,} loss rows in {loaded:.0f} s", flush=True)
            lines += [
                f"## {backend}: {args.runs + 1:,} runs, {rows:,} loss rows",
                "",
                f"Loaded in {loaded:.0f} s.",
                "",
                *table(["request", "median ms", "target", "met"], results),
                "",
            ]
            write(lines)
    lines += [
        "## Notes",
        "",
        "- `/api/runs` at offset 0 is `store.list_runs` (the same call as `runs list`); deeper "
        "pages take the ids from service/ui/queries.py and the records from `store.get_runs`.",
        "- The run page's curves are downsampled on the server (L to 500 points, each L_t to "
        "200), each bucket of epochs keeping its min and max; the heatmaps average buckets "
        "down to 200 epoch columns. The page says so above the charts.",
        "- The machine is shared with other work, so figures move by tens of percent between runs.",
        "",
    ]
    write(lines)
    print("\n".join(lines))


def write(lines: list[str]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ui_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
