"""Search quality: random search, random at twice the budget, TPE and GP, each with and without
ASHA pruning, on two expq tasks whose defaults are not at their ceiling.

Every study runs in-process through expq's own code: `plan_study` and `create_study` as
`expq sweep --search` calls them, then `workers.runner.execute_run` (claim, train, per-epoch
writes, pruning, finish) on each queued trial in trial order, so the top-up inside the
terminal transition proposes every trial after the first `parallel`. Messages are not
published (there is no broker): this loop takes the queued trials from the database.

Each arm's best configuration is retrained on fresh seeds (fresh data from the generator and
fresh weights) and scored by its final val loss on that held-out data. Seeds are paired: seed k
of every arm uses the same sampler seed and the same training seed.

Run from the repository root: python -m benchmarks.search_quality [--seeds 10] [--budget 20]
Writes benchmarks/results/search_quality.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULT = Path(__file__).parent / "results" / "search_quality.md"
PARALLEL = 2
RETRAIN_SEEDS = 3
FRESH_SEED = 100_000  # retraining seeds start here: data the search never saw
# Tasks whose defaults are far from their ceiling at this size, with the space searched.
TASKS = {
    "binary-mlp": {"task": "binary", "model": "mlp", "samples": "200", "epochs": "6"},
    "translation-mlp": {"task": "translation", "model": "mlp", "samples": "200", "epochs": "6"},
}
RANGES = ["lr=0.001:1:log", "hidden=4:64", "momentum=0:0.95", "dropout=0:0.5"]
# (arm name, search, budget multiplier, ASHA)
ARMS = [
    (f"{name}{' + ASHA' if asha else ''}", search, factor, asha)
    for asha in (False, True)
    for name, search, factor in (
        ("random", "random", 1),
        ("random x2", "random", 2),
        ("tpe", "tpe", 1),
        ("gp", "gp", 1),
    )
]


@dataclass(frozen=True)
class Outcome:
    task: str
    arm: str
    seed: int
    held_out: float  # mean final val loss of the best configuration, retrained
    search_best: float  # the study's best objective value
    epochs: int  # epochs trained by the study's trials in all
    seconds: float


def _run_study(task: str, search: str, trials: int, asha: bool, seed: int, url: str) -> Any:
    from sqlalchemy import func, select

    import service.lifecycle
    from service.config import load_settings
    from service.db import get_engine, session_scope
    from service.schema import Run
    from service.study import create_study, study_status
    from service.study_plan import SearchOptions, plan_study
    from service.sweep import parse_range
    from workers.dispatch import queue_for_device
    from workers.runner import execute_run

    service.lifecycle.publish_trials = lambda added: None  # no broker: the loop below claims
    engine = get_engine(url)
    options = SearchOptions(
        search,
        trials,
        PARALLEL,
        "final_val_loss:min",
        "asha" if asha else None,
        1 if asha else None,
        3 if asha else None,
    )
    raw = {**TASKS[task], "seed": str(seed), "device": "cpu"}
    plan, _ = plan_study(
        raw,
        [parse_range(text) for text in RANGES],
        options,
        experiment="bench",
        data=None,
        val_data=None,
        queue_for=queue_for_device,
        priority=0,
        max_attempts=1,
        tags={},
    )
    create_study(engine, plan)
    settings = load_settings()
    while True:
        with session_scope(engine) as session:
            queued = session.scalar(select(func.min(Run.run_id)).where(Run.status == "queued"))
        if queued is None:
            break
        execute_run(engine, queued, settings)
    status = study_status(engine, "bench")
    with session_scope(engine) as session:
        epochs = session.scalar(select(func.sum(Run.epochs_done)))
    return status, plan.base_spec, int(epochs or 0)


def _held_out(base: dict[str, Any], params: dict[str, Any]) -> float:
    from models.spec import spec_from_dict
    from models.training import fit

    losses = []
    for k in range(RETRAIN_SEEDS):
        spec = spec_from_dict({**base, **params, "seed": FRESH_SEED + k, "prune": None})
        reports: list = []
        fit(spec, on_epoch=reports.append)
        losses.append(reports[-1].val.total)
    return statistics.fmean(losses)


def one_study(
    task: str, arm: str, search: str, factor: int, asha: bool, seed: int, budget: int
) -> Outcome:
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        status, base, epochs = _run_study(task, search, budget * factor, asha, seed, url)
    best = status["best"]
    held_out = _held_out(base, best["params"])
    return Outcome(task, arm, seed, held_out, best["value"], epochs, time.perf_counter() - started)


def _ci(values: list[float], rounds: int = 2000) -> tuple[float, float]:
    """A 95% bootstrap interval of the median."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def report(outcomes: list[Outcome], args: argparse.Namespace, seconds: float) -> str:
    from benchmarks.learning_quality import machine

    command = (
        f"OMP_NUM_THREADS=1 python -m benchmarks.search_quality --seeds {args.seeds} "
        f"--budget {args.budget} --jobs {args.jobs}"
    )
    lines = [
        "# Search quality: random, random x2, TPE and GP, with and without ASHA",
        "",
        *machine(command),
        f"- wall time {seconds / 60:.1f} min with {args.jobs} processes; 2 cores shared with "
        "other sessions' test suites: the machine was loaded",
        "",
        f"Each study: {args.budget} trials (random x2: {2 * args.budget}), {PARALLEL} in flight, "
        "objective final_val_loss:min, over " + ", ".join(f"`{r}`" for r in RANGES) + ". "
        "In-process through expq's own code (plan_study, create_study, execute_run on each "
        "queued trial in trial order; the top-up in the terminal transition proposes the rest); "
        "no broker. ASHA: rungs at 1 and 3 epochs, reduction 3. Held-out: the study's best "
        f"configuration retrained on {RETRAIN_SEEDS} fresh seeds (fresh generated data and "
        "weights), mean final val loss. Medians over paired seeds with 95% bootstrap intervals; "
        "'vs random' is the median paired difference to random at the same budget (negative: "
        "better) with its interval; epochs: trained by all the study's trials, median per study.",
        "",
    ]
    for task in TASKS:
        lines += [
            f"## {task}: {TASKS[task]}",
            "",
            "| arm | seeds | held-out val L (median [95% CI]) | vs random (paired) | "
            "search best | epochs |",
            "|---|---|---|---|---|---|",
        ]
        base = {o.seed: o.held_out for o in outcomes if o.task == task and o.arm == "random"}
        for arm, *_ in ARMS:
            rows = sorted(
                (o for o in outcomes if o.task == task and o.arm == arm), key=lambda o: o.seed
            )
            held = [o.held_out for o in rows]
            low, high = _ci(held)
            diffs = [o.held_out - base[o.seed] for o in rows if o.seed in base]
            d_low, d_high = _ci(diffs)
            lines.append(
                f"| {arm} | {len(rows)} | {statistics.median(held):.4f} [{low:.4f}, {high:.4f}] | "
                f"{statistics.median(diffs):+.4f} [{d_low:+.4f}, {d_high:+.4f}] | "
                f"{statistics.median(o.search_best for o in rows):.4f} | "
                f"{statistics.median(o.epochs for o in rows):.0f} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULT)
    parser.add_argument(
        "--raw", type=Path, help="Append each study's outcome here as a JSON line as it ends."
    )
    parser.add_argument(
        "--report-only", action="store_true", help="Write the report from --raw; run nothing."
    )
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    started = time.perf_counter()
    if args.report_only:
        outcomes = [Outcome(**json.loads(line)) for line in args.raw.read_text().splitlines()]
        seeds = {o.seed for o in outcomes if sum(p.seed == o.seed for p in outcomes) == 16}
        outcomes = [o for o in outcomes if o.seed in seeds]  # whole seeds only: pairs
        args.seeds = len(seeds)
        args.output.write_text(report(outcomes, args, sum(o.seconds for o in outcomes) / args.jobs))
        return
    work = [
        (task, arm, search, factor, asha, seed, args.budget)
        for seed in range(args.seeds)
        for task in TASKS
        for arm, search, factor, asha in ARMS
    ]
    with ProcessPoolExecutor(args.jobs) as pool:
        outcomes = []
        for outcome in pool.map(one_study, *zip(*work, strict=True)):
            outcomes.append(outcome)
            if args.raw:
                with args.raw.open("a") as raw:
                    raw.write(json.dumps(asdict(outcome)) + "\n")
            print(
                f"{outcome.task} {outcome.arm} seed {outcome.seed}: held-out "
                f"{outcome.held_out:.4f}, {outcome.epochs} epochs, {outcome.seconds:.1f} s",
                flush=True,
            )
    text = report(outcomes, args, time.perf_counter() - started)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
