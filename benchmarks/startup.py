"""`python -m benchmarks.startup [--runs N] [--rounds R]`: how long `expq` takes to start and
answer, against the floor of the stack it is built on.

Each round runs every command once, in turn, so that load on a shared machine weighs on all of
them alike; medians over the rounds. The floor is the same interpreter importing Click and
SQLAlchemy (Core: expq's read commands never import the ORM), then the driver connecting and
running one query: what any Python CLI over SQLAlchemy pays before doing anything of its own.
Writes benchmarks/results/startup.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.store_common import RESULTS, machine, pg_database, table
from benchmarks.store_query import load_postgresql, load_sqlite

_IMPORTS = "import click, sqlalchemy"
_QUERY = (
    "import sys, click; from sqlalchemy import create_engine, text; "
    "engine = create_engine(sys.argv[1]); "
    "connection = engine.connect(); connection.execute(text('SELECT 1')).all()"
)


def _commands(url: str) -> dict[str, list[str]]:
    expq = [sys.executable, "-m", "service"]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        f"floor: {_IMPORTS}": [sys.executable, "-c", _IMPORTS],
        "floor: the imports, connect, SELECT 1": [sys.executable, "-c", _QUERY, url],
        "expq --version": [*expq, "--version"],
        "expq runs list --limit 20": [*expq, "runs", "list", "--limit", "20"],
        "expq runs show 1 --format json": [*expq, "runs", "show", "1", "--format", "json"],
    }


def _timed_ms(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return (time.perf_counter() - start) * 1000


def measure(url: str, home: Path, rounds: int) -> dict[str, list[float]]:
    """Wall milliseconds of each command, one list per command, rounds interleaved."""
    env = {**os.environ, "EXPQ_DATABASE_URL": url, "EXPQ_HOME": str(home)}
    commands = _commands(url)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():
        _timed_ms(command, env)  # warms the OS page cache
    for _ in range(rounds):
        for name, command in commands.items():
            times[name].append(_timed_ms(command, env))
    return times


def _rows(times: dict[str, list[float]]) -> list[list[object]]:
    floor = statistics.median(times["floor: the imports, connect, SELECT 1"])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        beyond = f"{median - floor:+.0f}" if name.startswith("expq runs") else ""
        rows.append([f"`{name}`", f"{median:.0f}", f"{min(values):.0f}", beyond])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs in each database")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    command = " ".join(["python -m benchmarks.startup", *sys.argv[1:]])
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    sections = []
    with tempfile.TemporaryDirectory() as scratch, pg_database("expq_bench_startup") as pg_url:
        home = Path(scratch)
        sqlite_path = home / "startup.db"
        load_sqlite(sqlite_path, args.runs)
        load_postgresql(pg_url, args.runs)
        for backend, url in (("sqlite", f"sqlite:///{sqlite_path}"), ("postgresql", pg_url)):
            times = measure(url, home, args.rounds)
            header = ["command", "median ms", "min ms", "beyond the floor (median ms)"]
            sections += [f"## {backend}", "", *table(header, _rows(times)), ""]
            print(f"{backend}: done", file=sys.stderr)
    lines = [
        "# Start-up: `expq` against the floor of its stack",
        "",
        *machine(command),
        f"- load average at start: {load}; {args.rounds} rounds, each command once per round"
        f" in turn; {args.runs:,} runs in each database",
        "",
        *sections,
    ]
    (RESULTS / "startup.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
