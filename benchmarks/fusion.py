"""Fused sweeps through a real worker: a 16-run sweep of each task x model, trained by one
`expq worker --fuse 16` and then by one `expq worker --fuse 1` on the same machine.

For each sweep (same shapes; lr, momentum, dropout and seed vary, one shared data seed): the
wall time from submit to the last run finished, the summed training samples per second, the
setup per run (claim, data and checkpoint lookup; a fused group's shared setup divided among
its members, from the worker's log lines), the training process's peak RSS during the sweep,
and whether every run's final losses are the same fused and alone.

Run from the repository root:
    python -m benchmarks.fusion [--samples 320] [--epochs 2] [--runs 16] [--fuse 16]
                                [--tasks T ...] [--models M ...]
                                [--database-url URL] [--output FILE]
Writes benchmarks/results/fusion.md. Starts a private redis-server; the database is SQLite in
a temporary folder unless --database-url names another.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.fleet_speed import Processes, fresh_database, machine, private_redis, wait_until

RESULT = Path(__file__).parent / "results" / "fusion.md"
TASKS = ("binary", "sentiment", "captioning", "translation")
MODELS = ("mlp", "rnn")
TARGETS = {"mlp": 4.0, "rnn": 1.8}  # fused / one at a time, on 2 CPU cores
SOLO_SETUP = re.compile(
    r"run (\d+) attempt \d+ \w+ in [\d.]+ s \(claim ([\d.]+) ms, setup ([\d.]+) ms"
)
GROUP_SETUP = re.compile(r"group \w+: (\d+) runs, claim and setup ([\d.]+) ms: ([\d, ]+)")
COLUMNS = (
    "task", "model", "wall fused s", "wall alone s", "samples/s fused", "samples/s alone",
    "speed-up", "target", "CPU s fused", "CPU s alone", "CPU speed-up", "setup/run fused ms",
    "setup/run alone ms", "peak RSS fused MB", "peak RSS alone MB", "groups", "same losses",
)  # fmt: skip
TERMINAL = {"succeeded", "failed", "diverged", "cancelled", "pruned"}


def sweep(task: str, model: str, runs: int, samples: int, epochs: int) -> list[dict]:
    """`runs` specs of one shape: lr x momentum x dropout, each with its own seed."""
    grid = itertools.product((0.01, 0.03, 0.1, 0.3), (0.0, 0.9), (0.0, 0.2))
    return [
        {"task": task, "model": model, "samples": samples, "epochs": epochs, "device": "cpu",
         "data_seed": 0, "lr": lr, "momentum": momentum, "dropout": dropout, "seed": seed}
        for seed, (lr, momentum, dropout) in enumerate(itertools.islice(grid, runs))
    ]  # fmt: skip


class Bench:
    def __init__(self, database: str, broker: str) -> None:
        from service.db import get_engine
        from workers.app import make_app

        self.engine, self.app = get_engine(database), make_app(broker)

    def submit(self, experiment: str, specs: list[dict]) -> list[int]:
        """The sweep in one batch: every run queued before the worker's first claim."""
        from service.store import NewRun
        from service.submit import submit_batch, validate_spec
        from workers.dispatch import queue_for_device

        batch = [
            (validate_spec(raw), NewRun(experiment, queue_for_device(raw["device"])))
            for raw in specs
        ]
        return [run.id for run in submit_batch(self.engine, self.app, experiment, batch)]

    def rows(self, run_ids: list[int]) -> list:
        from sqlalchemy import select

        from service.db import session_scope
        from service.schema import Run

        columns = (Run.run_id, Run.status, Run.finished_at, Run.final_val_loss, Run.group_id)
        with session_scope(self.engine, read_only=True) as session:
            return list(session.execute(select(*columns).where(Run.run_id.in_(run_ids))))

    def wait(self, run_ids: list[int], timeout: float) -> list:
        return wait_until(
            lambda: (
                (rows := self.rows(run_ids))
                and all(row.status in TERMINAL for row in rows)
                and rows
            ),
            timeout,
            f"{len(run_ids)} runs to finish",
            0.1,
        )


def pool_pids(worker_pid: int) -> list[int]:
    """The worker's pool processes: the children of its main process."""
    found = []
    for task in Path(f"/proc/{worker_pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(pid) for pid in text]
    return found


def reset_peak(pids: list[int]) -> None:
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


def peak_rss_mb(pids: list[int]) -> float:
    peaks = []
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        peaks.append(int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024)
    return max(peaks)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes so far: what a sweep cost, however much of the
    machine other jobs took meanwhile (wall time on a shared machine measures them too)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def setup_per_run(log: Path, run_ids: set[int]) -> float:
    """Mean ms of claim and setup per run, from the worker's log: a group's shared setup
    divided among its members, a run trained alone its own."""
    text = log.read_text()
    shared, grouped = [], set()
    for _, ms, ids in GROUP_SETUP.findall(text):
        members = {int(run) for run in ids.split(",")}
        if members & run_ids:
            shared.append((float(ms), len(members)))
            grouped |= members
    shared += [
        (float(claim) + float(setup), 1)
        for run, claim, setup in SOLO_SETUP.findall(text)
        if int(run) in run_ids - grouped  # a member's own line repeats the group's setup
    ]
    return sum(ms for ms, _ in shared) / sum(n for _, n in shared)


class Worker:
    """One idle `expq worker --fuse K` on its own queue, its pool process warm."""

    def __init__(self, bench: Bench, processes: Processes, env: dict, fuse: int) -> None:
        # Each on a queue of its own (cpu or auto, both training on the CPU), so that the two
        # modes can take turns sweep by sweep under the same load of a shared machine.
        self.bench, self.fuse = bench, fuse
        self.device = "auto" if fuse > 1 else "cpu"
        command = [sys.executable, "-m", "service", "worker", "--queues", self.device,
                   "--concurrency", "1", f"--fuse={fuse}", "--loglevel", "INFO"]  # fmt: skip
        self.log = processes.start(command, env, f"worker-fuse-{fuse}")
        worker = processes.started[-1]
        warm = bench.submit(f"warm-{fuse}", self.specs("binary", "mlp", 1, 64, 1))
        bench.wait(warm, 600)  # torch imported, the pool process up
        self.pids = pool_pids(worker.pid)

    def specs(self, *shape: object) -> list[dict]:
        return [{**spec, "device": self.device} for spec in sweep(*shape)]

    def sweep(self, task: str, model: str, args: argparse.Namespace) -> dict:
        specs = self.specs(task, model, args.runs, args.samples, args.epochs)
        reset_peak(self.pids)
        cpu = cpu_seconds(self.pids)
        started = time.time()
        run_ids = self.bench.submit(f"fuse{self.fuse}-{task}-{model}", specs)
        rows = self.bench.wait(run_ids, 3600)
        wall = max(row.finished_at.timestamp() for row in rows) - started
        rows.sort(key=lambda row: run_ids.index(row.run_id))
        trained = sum(spec["samples"] * 0.8 * spec["epochs"] for spec in specs)
        print(f"fuse {self.fuse} {task} {model}: {wall:.2f} s", flush=True)
        return {
            "wall": wall,
            "cpu": cpu_seconds(self.pids) - cpu,
            "samples_per_s": trained / wall,
            "setup_ms": setup_per_run(self.log, set(run_ids)),
            "peak_mb": peak_rss_mb(self.pids),
            "losses": [row.final_val_loss for row in rows],
            "statuses": {row.status for row in rows},
            # each fused group once, each run trained alone once
            "groups": len({row.group_id or f"alone {row.run_id}" for row in rows}),
        }


def report(args: argparse.Namespace, argv: list[str], load: tuple, fused: dict, solo: dict) -> str:
    lines = [
        f"# Fused sweeps through a real worker: --fuse {args.fuse} against --fuse 1",
        "",
        *(
            line.replace("benchmarks.fleet_speed", "benchmarks.fusion")
            for line in machine(argv, load)
        ),
        "",
        " ".join(
            [
                f"Each row: a sweep of {args.runs} runs of one shape (lr x momentum x dropout,",
                f"each its own seed, one data seed), {args.samples} samples, {args.epochs}",
                "epochs, submitted in one batch to an idle `expq worker --concurrency 1` on",
                f"CPU (SQLite, private Redis), trained fused (--fuse {args.fuse}), then the same",
                "sweep one at a time (--fuse 1) by a second idle worker: the two take turns",
                "sweep by sweep, so that both meet the same load. Wall: submit to the last run",
                "finished. Samples/s: the",
                "training samples of every run summed, over the wall time. CPU s: user + system",
                "time of the training process over the sweep, which other jobs on a shared",
                "machine do not inflate. Setup per run: claim, data and checkpoint lookup (a",
                "group's shared setup divided among its members). Peak RSS: the training",
                "process during the sweep. Same losses: every run's final val loss, fused",
                "against alone.",
            ]
        ),
        "",
        " ".join(
            [
                "RNN runs take the solo path whatever --fuse says",
                "(`workers.group.trains_in_group`; a recurrent layer over stacked weights was",
                "tried and rejected: `fusion_rnn_probe.md`), so an RNN row compares two workers",
                "that both train one run at a time: its ratio is the spread between two equal",
                "sweeps.",
            ]
        )
        if "rnn" in args.models
        else "",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for key in fused:
        f, s = fused[key], solo[key]
        speedup = s["wall"] / f["wall"]
        target = TARGETS[key[1]]
        same = sum(a == b for a, b in zip(f["losses"], s["losses"], strict=True))
        lines.append(
            f"| {key[0]} | {key[1]} | {f['wall']:.2f} | {s['wall']:.2f} "
            f"| {f['samples_per_s']:.0f} | {s['samples_per_s']:.0f} | {speedup:.2f}x "
            f"| {target:g}x {'met' if speedup >= target else 'missed'} "
            f"| {f['cpu']:.2f} | {s['cpu']:.2f} | {s['cpu'] / f['cpu']:.2f}x "
            f"| {f['setup_ms']:.1f} | {s['setup_ms']:.1f} | {f['peak_mb']:.0f} "
            f"| {s['peak_mb']:.0f} | {f['groups']} | {same}/{len(f['losses'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--samples", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--fuse", type=int, default=16, help="K of the fused worker")
    parser.add_argument("--database-url")
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")
    load = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="expq-fusion-"))
    database_url = args.database_url or f"sqlite:///{folder / 'expq.db'}"
    processes = Processes(folder)
    with private_redis(folder) as broker, fresh_database(database_url) as database:
        env = {**os.environ, "EXPQ_HOME": str(folder / "home"), "EXPQ_DATABASE_URL": database,
               "EXPQ_BROKER_URL": broker}  # fmt: skip
        env.pop("OMP_NUM_THREADS", None)  # the worker's own choice: every core to its one process
        bench = Bench(database, broker)
        try:
            fusing, alone = (Worker(bench, processes, env, k) for k in (args.fuse, 1))
            fused, solo = {}, {}
            for key in itertools.product(args.tasks, args.models):
                fused[key] = fusing.sweep(*key, args)
                solo[key] = alone.sweep(*key, args)
        finally:
            processes.stop_all()
    text = report(args, argv, load, fused, solo)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
