"""Loss- and metric-row write throughput: expq's real write path against MLflow and plain
SQLAlchemy Core.

Run from the repository root: python -m benchmarks.store_write [--scale F]
Writes benchmarks/results/store_write.md. All three write the same epochs (per split the
per-timestep losses and the total, token accuracy and exact match, and the token accuracy per
timestep; one batch per epoch, a commit per batch) into the same backend, SQLite (WAL) and
then PostgreSQL, at about 10, 100 and 1,000 rows an epoch:

- expq: `service.lifecycle.record_epoch`, the worker's call: the fenced summary UPDATE, the
  loss rows and the metric rows (executemany on SQLite, COPY on PostgreSQL) in one
  transaction, into the schema at head with every index it has;
- MLflow: `MlflowClient.log_batch` with the same values as metrics (step = epoch);
- Core: `connection.execute(insert(losses), rows)` and `insert(metrics)` into identical
  tables, one `engine.begin()` a batch: the ceiling a plain SQLAlchemy executemany reaches.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import insert

from benchmarks.store_common import RESULTS, machine, pg_database, table
from service.db import get_engine, make_engine, upgrade
from service.schema import Loss, Metric

# Rows an epoch: 2 splits x (T + 1 losses, 2 whole-split metrics, T per-timestep metrics).
BATCHES = (10, 98, 998)
TARGET_X_MLFLOW = 10
TARGET_OF_CORE = 0.5


class Split:
    """One split's report, shaped like models.training.SplitReport."""

    def __init__(self, total: float, per_timestep: list[float]) -> None:
        self.total, self.per_timestep = total, per_timestep
        accuracy = [1 - v / (1 + v) for v in per_timestep]
        self.metric = sum(accuracy) / len(accuracy)
        self.metrics = {"token_accuracy": self.metric, "exact_match": self.metric**4}
        self.per_timestep_metrics = {"token_accuracy": accuracy}


def epoch_values(rows: int, epoch: int) -> dict[str, Split]:
    steps = (rows // 2 - 3) // 2
    return {
        split: Split(
            float(steps) / epoch, [(t + offset) / (steps * epoch) for t in range(1, steps + 1)]
        )
        for split, offset in (("train", 0.0), ("val", 0.5))
    }


def epoch_rows(rows: int, epoch: int) -> tuple[list[tuple], list[tuple]]:
    """The epoch's (split, timestep, value) losses and (split, name, timestep, value) metrics."""
    losses, metrics = [], []
    for split, report in epoch_values(rows, epoch).items():
        losses += [(split, t, v) for t, v in enumerate(report.per_timestep, 1)]
        losses.append((split, None, report.total))
        metrics += [(split, name, None, v) for name, v in report.metrics.items()]
        for name, values in report.per_timestep_metrics.items():
            metrics += [(split, name, t, v) for t, v in enumerate(values, 1)]
    return losses, metrics


def rate(write: Callable[[int], int], epochs: int) -> float:
    """Rows per second of `write(epoch)` (it returns the rows it wrote) over `epochs` epochs."""
    write(0)  # warm-up: connections, statement caches, the first pages
    start = time.perf_counter()
    rows = sum(write(epoch) for epoch in range(1, epochs + 1))
    return rows / (time.perf_counter() - start)


def expq_writer(url: str, rows: int) -> Callable[[int], int]:
    from models.spec import spec_from_dict
    from service.lifecycle import claim_run, record_epoch
    from service.store import NewRun, create_run

    engine = get_engine(url)
    spec = spec_from_dict({"task": "translation", "model": "rnn", "epochs": 100_000})
    run = create_run(engine, spec.to_dict(), spec.params(), NewRun("bench", "cpu"))
    attempt = claim_run(engine, run.id, owner="b", worker="b", device="cpu", lease_seconds=3600)
    assert attempt is not None

    def write(epoch: int) -> int:
        record_epoch(engine, run.id, attempt, epoch + 1, epoch_values(rows, epoch + 1))
        if epoch == 0:
            _check_written(engine, run.id, rows)
        return rows

    return write


def _check_written(engine, run_id: int, rows: int) -> None:  # noqa: ANN001
    """The first epoch wrote every row counted: without the metric rows the rate would lie."""
    from sqlalchemy import func, select

    from service.db import session_scope

    with session_scope(engine, read_only=True) as session:
        written = sum(
            session.scalar(select(func.count()).select_from(t).where(t.run_id == run_id))
            for t in (Loss, Metric)
        )
    if written != rows:
        raise SystemExit(f"record_epoch wrote {written} rows of {rows}: are metrics recorded?")


def core_writer(url: str, rows: int) -> Callable[[int], int]:
    from models.spec import spec_from_dict
    from service.store import NewRun, create_run

    engine = make_engine(url)
    upgrade(engine)
    spec = spec_from_dict({"task": "translation", "model": "rnn"})
    run_id = create_run(get_engine(url), spec.to_dict(), spec.params(), NewRun("b", "cpu")).id
    key = {"run_id": run_id, "attempt": 1}

    def write(epoch: int) -> int:
        losses, metrics = epoch_rows(rows, epoch + 1)
        loss_batch = [
            {**key, "epoch": epoch + 1, "split": split, "timestep": t, "value": v}
            | {"value_kind": "finite"}
            for split, t, v in losses
        ]
        metric_batch = [
            {**key, "epoch": epoch + 1, "split": split, "name": name, "timestep": t, "value": v}
            for split, name, t, v in metrics
        ]
        with engine.begin() as connection:
            connection.execute(insert(Loss), loss_batch)
            connection.execute(insert(Metric), metric_batch)
        return len(loss_batch) + len(metric_batch)

    return write


def mlflow_writer(url: str, rows: int) -> Callable[[int], int]:
    from mlflow.entities import Metric as MlflowMetric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    run_id = client.create_run(client.create_experiment(f"bench-{rows}")).info.run_id

    def write(epoch: int) -> int:
        now = int(time.time() * 1000)
        losses, metrics = epoch_rows(rows, epoch + 1)
        batch = [
            MlflowMetric(f"{split}_loss_t{t}" if t else f"{split}_loss", value, now, epoch)
            for split, t, value in losses
        ] + [
            MlflowMetric(f"{split}_{name}_t{t}" if t else f"{split}_{name}", value, now, epoch)
            for split, name, t, value in metrics
        ]
        client.log_batch(run_id, metrics=batch)
        return len(batch)

    return write


def measure(urls: dict[str, str], scale: float) -> list[list[object]]:
    rows_out = []
    for rows in BATCHES:
        epochs = max(20, int(scale * 200_000 / rows / (4 if rows == 10 else 1)))
        expq = rate(expq_writer(urls["expq"], rows), epochs)
        core = rate(core_writer(urls["core"], rows), epochs)
        mlflow_epochs = max(10, epochs // 10)
        mlflow = rate(mlflow_writer(urls["mlflow"], rows), mlflow_epochs)
        print(
            f"  {rows} rows/epoch: expq {expq:,.0f}  core {core:,.0f}  mlflow {mlflow:,.0f}",
            flush=True,
        )
        rows_out.append([rows, expq, mlflow, core])
    return rows_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the default rows")
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    results: dict[str, list[list[object]]] = {}
    with tempfile.TemporaryDirectory(prefix="expq-bench-") as folder:
        base = Path(folder)
        print("sqlite", flush=True)
        results["sqlite"] = measure(
            {name: f"sqlite:///{base / f'{name}.db'}" for name in ("expq", "core", "mlflow")},
            args.scale,
        )
    print("postgresql", flush=True)
    with (
        pg_database("expq_bench_write") as expq,
        pg_database("expq_bench_core") as core,
        pg_database("expq_bench_mlflow_write") as mlflow,
    ):
        urls = {"expq": expq, "core": core, "mlflow": mlflow}
        results["postgresql"] = measure(urls, args.scale)
    lines = [
        "# Loss- and metric-row write throughput",
        "",
        *machine(f"python -m benchmarks.store_write --scale {args.scale:g}"),
        "",
        (__doc__ or "").split("\n\n", 1)[1].strip(),
        "",
        f"Load average before the run (1, 5, 15 min): {load}. "
        "Rows per second, each writer into its own fresh database on the same server. "
        "Targets at about 1,000 rows a batch (MLflow's log_batch limit): "
        f"expq >= {TARGET_X_MLFLOW}x MLflow on each backend, "
        f"and >= {TARGET_OF_CORE:.0%} of Core on SQLite.",
        "",
    ]
    for backend, rows in results.items():
        lines += [
            f"## {backend}",
            "",
            *table(
                [
                    "rows / epoch",
                    "expq",
                    "MLflow log_batch",
                    "Core executemany",
                    "expq / MLflow",
                    "expq / Core",
                ],
                [
                    [
                        n,
                        f"{e:,.0f}",
                        f"{m:,.0f}",
                        f"{c:,.0f}",
                        f"{e / m:.1f}x",
                        f"{e / c:.0%}",
                    ]
                    for n, e, m, c in rows
                ],
            ),
            "",
        ]
    lines += [
        "## Notes",
        "",
        "- Small epochs are commit-bound, not insert-bound: every epoch is its own transaction "
        "(the worker's contract), so 10 rows an epoch measure the commit (an fsync on "
        "PostgreSQL, a WAL append on SQLite with synchronous=NORMAL) and expq's summary "
        "SELECT + UPDATE beside it, which Core and MLflow do not do.",
        "- From about 64 rows an epoch expq writes through COPY on PostgreSQL, which is why it "
        "passes plain Core executemany there; on SQLite one DBAPI executemany of a prepared "
        "INSERT skips SQLAlchemy's per-row parameter processing.",
        "- On PostgreSQL about half of COPY's time is the losses -> runs foreign key, checked "
        "row by row (measured: 83k rows/s with it, 183k without, same table otherwise). The "
        "key stays: expq clears the target with it, and it keeps losses from outliving runs.",
        "- The values a sort reads (revision 0008's run_values: the last epoch's per-timestep "
        "losses and metrics, the best epoch's val metrics) are written once, when a run ends, "
        "not with each epoch: the rates above are each epoch's whole write. Revision 0006 had "
        "indexed every epoch's rows in value order instead, which cost 56 % of the rate at "
        "1,000 rows on SQLite (expq / MLflow 9.3x to 11.4x in three runs on 2026-12-02), and "
        "replacing a run's run_values rows each epoch cost 67 % (measured here on 2026-12-02 "
        "under load 13: 9,952 against 29,765 rows/s).",
        "- This machine is shared by other work: repeated runs spread by up to ~30 % (most for "
        "MLflow on SQLite).",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "store_write.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
