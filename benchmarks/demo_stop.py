"""`python -m benchmarks.demo_stop [--trials N] [--load K] [--label TEXT]`: how long `expq demo`
takes to stop on Ctrl-C while its worker trains.

Each trial starts the demo (embedded broker, SQLite, 50 epochs a run), sends it SIGINT once a
run has recorded an epoch (so that the worker's processes are writing epochs and checkpoints),
and times from the SIGINT until its last run was cancelled, until the demo exited, and until
the last process it started (its worker and the worker's pool processes) was gone. `--load K`
runs K busy loops beside it, as a loaded CI machine. Appends a section to
benchmarks/results/demo_stop.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.store_common import RESULTS, machine, table

_ACTIVE = ("queued", "running")


def _pids_with_home(home: Path) -> set[int]:
    marker = f"EXPQ_HOME={home}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def _statuses(database: Path) -> list[tuple[str, int]]:
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=0.1) as connection:
            return connection.execute("SELECT status, epochs_done FROM runs").fetchall()
    except sqlite3.Error:
        return []


def trial(home: Path) -> dict[str, float]:
    """Seconds from the SIGINT to: the last cancel, the demo's exit, the last process's exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPQ_")}
    demo = subprocess.Popen(
        [sys.executable, "-m", "service", "demo", "--epochs", "50"],
        env={**env, "EXPQ_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # A shell's background job ignores SIGINT, and the demo would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    database = home / "expq.db"
    deadline = time.monotonic() + 300
    while not any(epochs for _, epochs in _statuses(database)):
        if time.monotonic() > deadline or demo.poll() is not None:
            raise RuntimeError("no run recorded an epoch")
        time.sleep(0.1)
    demo.send_signal(signal.SIGINT)
    sent = time.monotonic()
    marks: dict[str, float] = {}
    while len(marks) < 3:
        now = time.monotonic() - sent
        if "cancels" not in marks and not any(s in _ACTIVE for s, _ in _statuses(database)):
            marks["cancels"] = now
        if "demo" not in marks and demo.poll() is not None:
            marks["demo"] = now
        if "processes" not in marks and not _pids_with_home(home):
            marks["processes"] = now
        if now > 300:
            raise RuntimeError(f"the demo did not stop: {marks}")
        time.sleep(0.05)
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--load", type=int, default=0, help="busy loops running beside it")
    parser.add_argument("--label", default="current tree")
    args = parser.parse_args()
    command = shlex.join(["python", "-m", "benchmarks.demo_stop", *sys.argv[1:]])
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    loads, results = [], []
    try:
        for number in range(args.trials):
            loads.append(os.getloadavg()[0])
            with tempfile.TemporaryDirectory() as scratch:
                results.append(trial(Path(scratch) / "home"))
            print(f"trial {number + 1}: {results[-1]}", file=sys.stderr)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    rows = [
        [
            name,
            f"{statistics.median(r[key] for r in results):.2f}",
            f"{max(r[key] for r in results):.2f}",
        ]
        for name, key in (
            ("every run cancelled", "cancels"),
            ("the demo exited", "demo"),
            ("every process it started gone", "processes"),
        )
    ]
    lines = [
        f"## {args.label}",
        "",
        *machine(command),
        f"- {args.trials} trials, {args.load} busy loops beside them; 1-minute load average at"
        f" each SIGINT: {', '.join(f'{load:.1f}' for load in loads)}",
        "",
        *table(["seconds after the SIGINT until", "median", "max"], rows),
        "",
    ]
    path = RESULTS / "demo_stop.md"
    if not path.exists():
        path.write_text("# `expq demo`: Ctrl-C while its worker trains\n\n")
    with path.open("a") as results_file:
        results_file.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
