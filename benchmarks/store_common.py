"""What the store benchmarks share: the two backends, throwaway databases, timing, reporting."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

RESULTS = Path(__file__).parent / "results"
# The server the benchmarks create their databases on (dropped afterwards): the dev machines'.
PG_SERVER = os.environ.get("EXPQ_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def machine(command: str) -> list[str]:
    """Markdown lines naming the date, machine and software behind the numbers."""
    uname = subprocess.run(["uname", "-srm"], capture_output=True, text=True).stdout.strip()
    pg = subprocess.run(
        ["psql", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    import sqlite3

    return [
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: `{uname}`, {os.cpu_count()} cores",
        f"- python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
        f"SQLite {sqlite3.sqlite_version}, {pg or 'PostgreSQL'} (server on 127.0.0.1, defaults)",
        f"- command: `{command}`",
    ]


@contextmanager
def pg_database(name: str, keep: bool = False, reuse: bool = False) -> Iterator[str]:
    """A fresh PostgreSQL database on PG_SERVER (the existing one if `reuse`); its URL.
    Dropped afterwards unless `keep`."""
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
        if not (reuse and exists):
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)
    finally:
        if not keep:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def median_ms(action: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """The median wall time of `action` in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        action()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def process_ms(args: list[str], env: dict[str, str], repeat: int = 5) -> float:
    """The median whole-process wall time of `python -m service ARGS` in milliseconds."""
    times = []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "service", *args],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[1:])  # the first run warms the OS page cache


def table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines
