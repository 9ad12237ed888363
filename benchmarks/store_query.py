"""Query latency at scale: 100,000 runs, over 10,000,000 loss rows and as many metric rows, on
SQLite and PostgreSQL.

Run from the repository root: python -m benchmarks.store_query [--runs N] [--mlflow-runs N]
[--data-dir DIR [--reuse]] (DIR keeps the SQLite database and the PostgreSQL one is kept too;
--reuse queries them again without loading).
Writes benchmarks/results/store_query.md. Each timed command runs in-process through the real
CLI (click, the store, the table drawn), the process start excluded: the median of 5 after one
warm-up. The whole-process wall time of `expq runs list --limit 20` is measured separately, on
a 1,000-run database and on the big one. Beside it: `mlflow.search_runs` on MLflow runs holding
the same hyperparameters and per-timestep metrics, with a comparable filter and order.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.store_common import RESULTS, machine, median_ms, pg_database, process_ms, table
from models.spec import applied_params, spec_from_dict
from service.db import make_engine, upgrade

TASKS = {"binary": 1, "sentiment": 1, "captioning": 8, "translation": 8}  # task → timesteps T
EPOCHS = 10
EXPERIMENTS = 20
LIST_WHERE = "lr < 0.05 and (model = 'rnn' or tag.team = 'a')"
STEP_WHERE = "val_loss_t[3] < 0.2"
BOTH_WHERE = "(hidden >= 64 or tag.team = 'b') and val_loss_t[3] < 0.2"
RARE_WHERE = "val_loss_t[3] < 0.0005"
METRIC_WHERE = "val_exact_match >= 0.9"
PG_DATABASE = "expq_bench_query"
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def _metric_rows(
    i: int, epoch: int, split: str, steps: int, level: float, rng: random.Random
) -> tuple[list, dict[str, float]]:
    """One epoch's metric rows of a split, as the worker writes them, and its whole-split ones."""
    if steps == 1:
        whole = {"accuracy": level}
        return [(i, 1, epoch, split, "accuracy", None, level)], whole
    per_step = [min(1.0, level * rng.uniform(0.9, 1.1)) for _ in range(steps)]
    whole = {"token_accuracy": sum(per_step) / steps, "exact_match": level**4}
    rows = [(i, 1, epoch, split, name, None, value) for name, value in whole.items()]
    rows += [(i, 1, epoch, split, "token_accuracy", t, v) for t, v in enumerate(per_step, 1)]
    return rows, whole


def _run(i: int, rng: random.Random) -> tuple[dict, list, list, list, list]:
    """Run i: its runs row, params, tags, loss rows and metric rows (trained runs only)."""
    task = list(TASKS)[i % 4]
    model = ("mlp", "rnn")[(i // 4) % 2]
    spec = spec_from_dict(
        {
            "task": task,
            "model": model,
            "lr": round(10 ** rng.uniform(-3, 0), 5),
            "hidden": rng.choice((16, 32, 64, 128)),
            "layers": rng.choice((1, 2)),
            "dropout": rng.choice((0.0, 0.1, 0.2)),
            "seed": i,
        }
    )
    roll = rng.random()
    status = (
        "queued"
        if roll < 0.01
        else "running"
        if roll < 0.04
        else "failed"
        if roll < 0.08
        else "succeeded"
    )
    done = 0 if status == "queued" else EPOCHS
    steps = TASKS[task]
    created = BASE + timedelta(seconds=i)
    losses, metrics, totals = [], [], {"train": [], "val": []}
    val_metrics: list[dict[str, float]] = []
    quality = rng.uniform(0.05, 1.0)
    for epoch in range(1, done + 1):
        decay = quality * (1.5 - epoch / EPOCHS)
        for split in ("train", "val"):
            values = [decay * rng.uniform(0.2, 1.0) for _ in range(steps)]
            total = sum(values)
            totals[split].append(total)
            for t, value in enumerate(values, start=1):
                losses.append((i, 1, epoch, split, t, value, "finite"))
            losses.append((i, 1, epoch, split, None, total, "finite"))
            level = max(0.0, 1.0 - decay * rng.uniform(0.2, 0.6))
            rows, whole = _metric_rows(i, epoch, split, steps, level, rng)
            metrics += rows
            if split == "val":
                val_metrics.append(whole)
    final = {s: (v[-1] if v else None) for s, v in totals.items()}
    best = {s: (min(v) if v else None) for s, v in totals.items()}
    best_epoch = totals["val"].index(best["val"]) + 1 if done else None
    primary = "accuracy" if steps == 1 else "token_accuracy"
    run = {
        "run_id": i,
        "experiment_id": 1 + i % EXPERIMENTS,
        "task": task,
        "model": model,
        "status": status,
        "spec": json.dumps(spec.to_dict()),
        "queue": "cpu",
        "priority": 0,
        "device": None if status == "queued" else "cpu",
        "worker": None if status == "queued" else f"worker-{i % 8}",
        "attempt": 0 if status == "queued" else 1,
        "max_attempts": 3,
        "epochs_done": done,
        "final_train_loss": final["train"],
        "final_val_loss": final["val"],
        "best_train_loss": best["train"],
        "best_val_loss": best["val"],
        "final_metric": val_metrics[-1][primary] if done else None,
        "best_epoch": best_epoch,
        "best_metric": val_metrics[best_epoch - 1][primary] if done else None,
        "best_metrics": json.dumps(val_metrics[best_epoch - 1]) if done else None,
        "final_metrics": json.dumps(val_metrics[-1]) if done else None,
        "timesteps": steps if done else None,
        "error": "boom" if status == "failed" else None,
        "created_at": created,
        "queued_at": created,
        "started_at": None if status == "queued" else created + timedelta(seconds=1),
        "finished_at": created + timedelta(seconds=60)
        if status in ("succeeded", "failed")
        else None,
    }
    params = [
        (
            i,
            name,
            float(v) if isinstance(v, (int, float)) else None,
            v if isinstance(v, str) else None,
        )
        for name, v in applied_params(spec.to_dict()).items()
    ]
    tags = [(i, "team", "abc"[i % 3]), (i, "sweep", f"s{i % 100}")]
    return run, params, tags, losses, metrics


def generate(runs: int, chunk: int = 2_000) -> Iterator[tuple[list, list, list, list, list]]:
    rng = random.Random(7)
    for start in range(1, runs + 1, chunk):
        batch = [_run(i, rng) for i in range(start, min(start + chunk, runs + 1))]
        yield tuple([item[k] for item in batch] for k in range(5))  # type: ignore[misc]


RUN_COLUMNS = list(_run(1, random.Random(0))[0])


def _sqlite_time(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S.%f")


_METRIC_COLUMNS = "metrics (run_id, attempt, epoch, split, name, timestep, value)"


# The rows are loaded at this revision; the upgrade to head after them fills what later
# revisions derive from recorded epochs (0008: each run's run_values), as on a user's database.
LOADED_AT = "0007"


def load_sqlite(path: Path, runs: int) -> tuple[int, int]:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine, LOADED_AT)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous=OFF")
    # Bulk loading: the row tables' secondary indexes are built once, after the rows.
    deferred = connection.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        "AND tbl_name IN ('losses', 'metrics')"
    ).fetchall()
    for name, _ in deferred:
        connection.execute(f'DROP INDEX "{name}"')
    connection.executemany(
        "INSERT INTO experiments (experiment_id, name, created_at) VALUES (?, ?, ?)",
        [(e, f"exp{e}", _sqlite_time(BASE)) for e in range(1, EXPERIMENTS + 1)],
    )
    insert_run = (
        f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})"
    )
    count = metric_count = 0
    for batch_runs, params, tags, losses, metrics in generate(runs):
        connection.execute("BEGIN")
        connection.executemany(
            insert_run,
            [
                tuple(_sqlite_time(v) if isinstance(v, datetime) else v for v in run.values())
                for run in batch_runs
            ],
        )
        connection.executemany("INSERT INTO run_params VALUES (?, ?, ?, ?)", sum(params, []))
        connection.executemany("INSERT INTO run_tags VALUES (?, ?, ?)", sum(tags, []))
        rows = sum(losses, [])
        connection.executemany(
            "INSERT INTO losses (run_id, attempt, epoch, split, timestep, value, value_kind) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        metric_rows = sum(metrics, [])
        connection.executemany(
            f"INSERT INTO {_METRIC_COLUMNS} VALUES (?, ?, ?, ?, ?, ?, ?)", metric_rows
        )
        connection.execute("COMMIT")
        count += len(rows)
        metric_count += len(metric_rows)
    for _, sql in deferred:
        connection.execute(sql)
    connection.close()
    upgrade(engine)
    return count, metric_count


def load_postgresql(url: str, runs: int) -> tuple[int, int]:
    import psycopg

    engine = make_engine(url)
    upgrade(engine, LOADED_AT)
    raw = url.replace("postgresql+psycopg://", "postgresql://")
    count = metric_count = 0
    with psycopg.connect(raw) as connection:
        # Bulk loading: the row tables' indexes that back no constraint are built after.
        deferred = connection.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('losses', 'metrics') "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        ).fetchall()
        for name, _ in deferred:
            connection.execute(f'DROP INDEX "{name}"')
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO experiments (experiment_id, name, created_at) VALUES (%s, %s, %s)",
                [(e, f"exp{e}", BASE) for e in range(1, EXPERIMENTS + 1)],
            )
        for batch_runs, params, tags, losses, metrics in generate(runs):
            with connection.cursor() as cursor:
                for statement, rows in (
                    (
                        f"COPY runs ({', '.join(RUN_COLUMNS)}) FROM STDIN",
                        [tuple(r.values()) for r in batch_runs],
                    ),
                    ("COPY run_params FROM STDIN", sum(params, [])),
                    ("COPY run_tags FROM STDIN", sum(tags, [])),
                    (
                        "COPY losses (run_id, attempt, epoch, split, timestep, value, value_kind) "
                        "FROM STDIN",
                        sum(losses, []),
                    ),
                    (f"COPY {_METRIC_COLUMNS} FROM STDIN", sum(metrics, [])),
                ):
                    with cursor.copy(statement) as copy:
                        for row in rows:
                            copy.write_row(row)
            count += len(sum(losses, []))
            metric_count += len(sum(metrics, []))
            connection.commit()
        for _, sql in deferred:
            connection.execute(sql)
        with connection.cursor() as cursor:
            cursor.execute("SELECT setval('experiments_experiment_id_seq', 1000)")
            cursor.execute(f"SELECT setval('runs_run_id_seq', {runs + 1})")
        connection.commit()
        upgrade(engine)
        engine.dispose()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE")
    return count, metric_count


def cli_ms(url: str, args: list[str]) -> float:
    """In-process median of 5 of `expq ARGS` through the real CLI, output discarded."""
    from click.testing import CliRunner

    from service.cli import cli

    os.environ["EXPQ_DATABASE_URL"] = url
    runner = CliRunner()

    def invoke() -> None:
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output

    return median_ms(invoke)


def matches(url: str, where: str) -> int:
    from service.db import get_engine
    from service.store import list_runs

    return len(list_runs(get_engine(url), where=where, limit=None, sort="id"))


def queries(url: str, runs: int) -> list[tuple[str, float, int | str, str]]:
    """(command, median ms, runs matching, verdict) for each timed command."""
    show_id = runs // 2 + 3  # a translation run: 180 loss rows
    within_200 = [  # a filtered sorted list, show, per-timestep and metric filters
        ["runs", "list", "--where", LIST_WHERE, "--sort", "final_val_loss", "--limit", "20"],
        ["runs", "show", str(show_id)],
        ["runs", "list", "--where", STEP_WHERE, "--limit", "20"],
        ["runs", "show", str(show_id), "--format", "json"],
        ["runs", "list", "--where", STEP_WHERE, "--sort", "final_val_loss", "--limit", "20"],
        ["runs", "list", "--where", BOTH_WHERE, "--sort", "final_val_loss", "--limit", "20"],
        ["runs", "list", "--where", METRIC_WHERE, "--sort", "best_metric:desc", "--limit", "20"],
        ["runs", "list", "--sort", "best_metric:desc", "--limit", "20"],
    ]
    within_300 = [  # a per-timestep or per-metric sort over all runs
        ["runs", "list", "--sort", "val_loss_t[3]", "--limit", "20"],
        ["runs", "list", "--sort", "val_exact_match:desc", "--limit", "20"],
        ["runs", "list", "--sort", "val_token_accuracy_t[2]:desc", "--limit", "20"],
    ]
    beyond = [  # no target: what reads every run, shown so the limits are known
        ["runs", "list", "--where", RARE_WHERE, "--limit", "20"],
        ["runs", "summary", "--group-by", "model,hidden"],
        ["runs", "summary", "--group-by", "task", "--metric", "val_loss_t[1]"],
        ["runs", "summary", "--group-by", "task", "--metric", "best_val_exact_match"],
    ]
    found = []
    for args in within_200 + within_300 + beyond:
        where = args[args.index("--where") + 1] if "--where" in args else None
        shown = " ".join(f'"{a}"' if " " in a or "[" in a else a for a in args)
        ms = cli_ms(url, args)
        target = 200 if args in within_200 else 300 if args in within_300 else None
        verdict = "(no target)" if target is None else f"{'yes' if ms < target else '**no**'}"
        found.append((shown, ms, matches(url, where) if where else "-", target, verdict))
    return found


def mlflow_search(url: str, runs: int) -> tuple[float, float, int]:
    """Load `runs` MLflow runs like ours (params, per-epoch totals, last-epoch L_t); time
    search_runs with the per-timestep filter and the final val loss order. (load s, ms, hits)"""
    import logging

    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    experiment = client.create_experiment("bench")
    rng = random.Random(7)
    start = time.perf_counter()
    for i in range(1, runs + 1):
        run, params, tags, losses = _run(i, rng)
        created = client.create_run(experiment)
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"{split}_loss" if t is None else f"{split}_loss_t{t}", value, now, epoch)
            for _, _, epoch, split, t, value, _ in losses
            if t is None or epoch == EPOCHS
        ]
        client.log_batch(
            created.info.run_id,
            metrics=metrics,
            params=[
                Param(name, str(num if num is not None else text)) for _, name, num, text in params
            ],
            tags=[RunTag(key, value) for _, key, value in tags],
        )
    load_s = time.perf_counter() - start
    filter_string = "metrics.val_loss_t3 < 0.2"
    hits = len(mlflow.search_runs([experiment], filter_string, max_results=50_000))

    def search() -> None:
        mlflow.search_runs(
            [experiment], filter_string, max_results=20, order_by=["metrics.val_loss ASC"]
        )

    return load_s, median_ms(search), hits


def _pg_size(url: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as connection:
        size = connection.execute(text("SELECT pg_database_size(current_database())")).scalar()
    engine.dispose()
    return f"{size / 2**30:.2f} GiB"


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def startup_ms(url: str, home: Path) -> float:
    env = {**os.environ, "EXPQ_DATABASE_URL": url, "EXPQ_HOME": str(home)}
    return process_ms(["runs", "list", "--limit", "20"], env)


def _sqlite_loaded(path: Path, runs: int, reuse: bool) -> tuple[str, float | None, int, int]:
    """The big SQLite database: (url, load seconds or None when reused, loss rows, metric rows)."""
    url = f"sqlite:///{path}"
    if reuse and path.exists():
        with sqlite3.connect(path) as connection:
            counts = [
                connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("losses", "metrics")
            ]
        return url, None, counts[0], counts[1]
    path.unlink(missing_ok=True)
    begin = time.perf_counter()
    rows, metric_rows = load_sqlite(path, runs)
    return url, time.perf_counter() - begin, rows, metric_rows


def _pg_loaded(url: str, runs: int, reuse: bool) -> tuple[float | None, int, int]:
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    with engine.connect() as connection:
        if reuse and inspect(connection).has_table("metrics"):
            counts = [
                connection.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ("losses", "metrics")
            ]
            engine.dispose()
            return None, counts[0], counts[1]
    engine.dispose()
    begin = time.perf_counter()
    rows, metric_rows = load_postgresql(url, runs)
    return time.perf_counter() - begin, rows, metric_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--mlflow-runs", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--mlflow-backends", default="sqlite,postgresql")
    parser.add_argument("--data-dir", type=Path, help="keep the big databases (SQLite in DIR)")
    parser.add_argument("--reuse", action="store_true", help="query kept databases, no loading")
    parser.add_argument("--load-only", action="store_true", help="load into --data-dir, stop")
    args = parser.parse_args()
    if args.load_only:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                print(_sqlite_loaded(args.data_dir / "big.db", args.runs, reuse=False)[1:])
            else:
                with pg_database(PG_DATABASE, keep=True) as url:
                    print(_pg_loaded(url, args.runs, reuse=False))
        return
    command = (
        f"python -m benchmarks.store_query --runs {args.runs} --mlflow-runs {args.mlflow_runs}"
    )
    lines = [
        "# Store query latency",
        "",
        *machine(command + (" --data-dir DIR --reuse" if args.reuse else "")),
        f"- load average before the timed commands (1, 5, 15 min): {_load()}",
        "",
        "Each command runs in-process through the real CLI (argument parsing, the store, the "
        "table drawn to a discarded stdout); the figure is the median of 5 after one warm-up. "
        "The process start is excluded here and reported under Start-up.",
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="expq-bench-") as folder:
        home = Path(folder)
        kept = args.data_dir or home
        kept.mkdir(parents=True, exist_ok=True)
        small = home / "small.db"
        load_sqlite(small, 1_000)
        startup = {"sqlite (1,000 runs)": startup_ms(f"sqlite:///{small}", home)}
        for backend in args.backends.split(","):
            print(f"{backend}: {args.runs} runs ...", flush=True)
            if backend == "sqlite":
                path = kept / "big.db"
                url, loaded, rows, metric_rows = _sqlite_loaded(path, args.runs, args.reuse)
                results = queries(url, args.runs)
                startup[f"sqlite ({args.runs:,} runs)"] = startup_ms(url, home)
                size = f"{path.stat().st_size / 2**30:.2f} GiB"
            else:
                with pg_database(
                    PG_DATABASE, keep=args.data_dir is not None, reuse=args.reuse
                ) as url:
                    loaded, rows, metric_rows = _pg_loaded(url, args.runs, args.reuse)
                    results = queries(url, args.runs)
                    startup[f"postgresql ({args.runs:,} runs)"] = startup_ms(url, home)
                    size = _pg_size(url)
            print(f"{backend}: {rows:,} loss rows, {metric_rows:,} metric rows", flush=True)
            how = (
                "reused from an earlier load"
                if loaded is None
                else f"loaded in {loaded:.0f} s (bulk executemany / COPY)"
            )
            lines += [
                f"## {backend}: {args.runs:,} runs, {rows:,} loss rows, "
                f"{metric_rows:,} metric rows",
                "",
                f"Database {how}, size {size}.",
                "",
                *table(
                    ["command", "median ms", "runs matching the filter", "target ms", "met"],
                    [[f"`expq {c}`", f"{ms:.1f}", n, t or "-", v] for c, ms, n, t, v in results],
                ),
                "",
            ]
        lines += [
            "## Start-up: whole-process wall time of `expq runs list --limit 20`",
            "",
            "Median of 5 after one warm-up run; includes the interpreter start, imports and the "
            "schema check. Target: < 500 ms on a 1,000-run database.",
            "",
            *table(["database", "median ms"], [[k, f"{v:.0f}"] for k, v in startup.items()]),
            "",
        ]
        if not args.mlflow_runs:
            lines += [
                "MLflow's `search_runs` was not rerun here (`--mlflow-runs 0`): see this file's "
                "history for the 2026-11-27 comparison.",
                "",
            ]
        if args.mlflow_runs:
            print(f"loading {args.mlflow_runs} MLflow runs ...", flush=True)
            mlflow_rows = []
            for backend in args.mlflow_backends.split(","):
                if backend == "sqlite":
                    load_s, ms, hits = mlflow_search(
                        f"sqlite:///{home / 'mlflow.db'}", args.mlflow_runs
                    )
                    mlflow_rows.append(["sqlite", f"{load_s:.0f}", f"{ms:.1f}", hits])
                else:
                    with pg_database("expq_bench_mlflow") as url:
                        load_s, ms, hits = mlflow_search(url, args.mlflow_runs)
                    mlflow_rows.append(["postgresql", f"{load_s:.0f}", f"{ms:.1f}", hits])
            lines += [
                f"## Beside it: MLflow `search_runs` on {args.mlflow_runs:,} runs",
                "",
                "The same generated runs logged through `MlflowClient.log_batch` (17 params, "
                "2 tags, the total train/val loss per epoch as steps, the last epoch's "
                "per-timestep losses as metrics `val_loss_tN`). Timed: "
                '`mlflow.search_runs([exp], "metrics.val_loss_t3 < 0.2", max_results=20, '
                'order_by=["metrics.val_loss ASC"])`, '
                "median of 5 after a warm-up; compare expq's "
                f"`runs list --where '{STEP_WHERE}' --sort final_val_loss --limit 20` above, "
                "on ten times as many runs.",
                "",
                *table(
                    ["backend", "load s", "search_runs median ms", "runs matching"], mlflow_rows
                ),
                "",
            ]
    lines += [
        "## Notes",
        "",
        "- The data: 20 experiments, four tasks (binary and sentiment with T = 1, captioning "
        "and translation with T = 8), 10 epochs a trained run, 1 % of runs still queued; "
        "hyperparameters drawn at random (lr log-uniform in [0.001, 1]), tags team and sweep. "
        "`val_loss_t[3]` exists only for the runs with T = 8, half of them. Metric rows as the "
        "worker writes them: accuracy for T = 1, token_accuracy, exact_match and token_accuracy "
        "at each step for T = 8, per split and epoch; each run's best epoch (lowest val L), "
        "best_metric, best_metrics and final_metrics.",
        "- How the filters run: `--where` compiles to EXISTS probes correlated to each run (params "
        "by (run_id, name), tags by (run_id, key), per-timestep losses and metrics by their "
        "unique keys with epoch = epochs_done (best_epoch for best_val_NAME) and the run's "
        "winning attempt). With `--sort final_val_loss --limit 20` or `--sort best_metric` both "
        "databases walk that column's index and stop after 20 matches; runs without the sort "
        "value come after, from a second statement, so the index stays usable.",
        "- A sort by a per-timestep loss or a metric reads run_values for the ended runs "
        "(revision 0008: each run's last-epoch per-timestep losses and metrics and its best "
        "epoch's val metrics, one row each, written once as the run ends), walking its (at, "
        "split, name, timestep, value) index in value order and stopping after 20, and merges "
        "them with the runs still queued or training, probed one by one (4 % of the runs "
        "here). Before any index, every run was probed (`--sort val_loss_t[3]`: 361 ms on "
        "SQLite, 427-709 ms on PostgreSQL); revision 0006 indexed every epoch's rows instead, "
        "at a cost to each epoch's write that run_values does not have (store_write.md).",
        "- Where a filter matches nothing (the row marked no target), every run is still probed "
        "once, about 2-3 µs a probe on SQLite.",
        "- A filter's conjuncts are tested cheapest first: a column comparison, then a "
        "per-timestep loss or metric probe (which rules out the runs lacking the row), then "
        "param and tag probes, whatever the order typed.",
        "- A per-timestep filter (`val_loss_t[3] < 0.2`) first tests the run's T (revision "
        "0007: `timesteps >= 3`), and the sorted summary columns' indexes carry T as their "
        "second column, so a walk of `final_val_loss` skips the ~18,000 T = 1 runs inside the "
        "index. Before it, PostgreSQL fetched each of those runs' rows and probed its losses "
        "(361 ms).",
        "- A listing with a LIMIT probes params and tags run by run (`EXISTS (... OFFSET 0)`): "
        "under an `or`, PostgreSQL otherwise hashed every run's `hidden` and `team` first, "
        "planning for all runs rather than the 20 read (686 ms). Summaries and exports, which "
        "read every run, keep the planner's choice.",
        "- Start-up: each command imports only its own module, SQLite never imports "
        "SQLAlchemy's PostgreSQL dialect, the garbage collector is off while a command's "
        "modules load (70 ms) and never walks them again once they are loaded (its last pass "
        "at exit was 130 ms), the read commands query SQLAlchemy Core tables without "
        "importing the ORM (80 ms), and tables are drawn without rich (33 ms). What remains "
        "is mostly SQLAlchemy Core and Click; on PostgreSQL psycopg (45-65 ms), SQLAlchemy's "
        "PostgreSQL dialect package (20-28 ms) and the first connection with the schema check "
        "(35-80 ms) come on top. `python -m benchmarks.startup` sets each command against "
        "that floor (startup.md).",
        "- PostgreSQL sessions run with `jit = off`: its JIT spent 200 ms compiling plans for "
        "queries that then ran in tens of milliseconds.",
        "- The machine is shared with other work, so figures move by tens of percent between runs.",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "store_query.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
