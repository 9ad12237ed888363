"""expq's fleet against plain Celery on the same Redis, in the same run.

(a) latency: on an idle fleet, one job at a time, the time from `submit_spec` (insert and
    publish) to the worker's claim, over 200 jobs; beside a Celery no-op task's round trip
    (delay, run, result back) on the same Redis.
(b) throughput: 1,000 one-epoch tiny jobs through 2 workers, end to end (first submit to last
    run finished); beside a burst of 1,000 Celery no-op tasks through 2 Celery workers. The time
    per job is split into queue (submitted → claimed), claim, setup, training and writes, from
    the database and the runner's per-run log line. The workers run with --fuse 1: the 1,000
    jobs share one shape, and the default (8) would train them in fused groups, which this
    benchmark does not measure (benchmarks/fusion.py does).

Run from the repository root:
    python -m benchmarks.fleet_speed [--jobs 1000] [--latency-jobs 200] [--database-url URL]
Writes benchmarks/results/fleet_speed.md. It starts a private redis-server (no persistence) in
a temporary folder, so nothing else shares the broker; the database is PostgreSQL by default,
in a fresh schema dropped afterwards (`--database-url sqlite:///...` for SQLite).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RESULT = Path(__file__).parent / "results" / "fleet_speed.md"
DEFAULT_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TINY = {
    "task": "binary",
    "model": "mlp",
    "hidden": 8,
    "samples": 20,
    "epochs": 1,
    "batch_size": 32,
    "device": "cpu",
}
LATENCY_TARGET = 3.0  # expq's submit-to-start within 3x Celery's round trip
THROUGHPUT_TARGET = 50.0  # jobs/s
PHASES = re.compile(
    r"run (\d+) attempt \d+ succeeded in [\d.]+ s \(claim ([\d.]+) ms, setup ([\d.]+) ms, "
    r"train ([\d.]+) ms, writes ([\d.]+) ms\)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.002):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
    return value


@contextmanager
def private_redis(folder: Path) -> Iterator[str]:
    import redis

    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder), "--logfile", str(folder / "redis.log")],
        start_new_session=True,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        try:
            return bool(redis.Redis.from_url(url).ping())
        except redis.ConnectionError:
            return False

    try:
        wait_until(answers, 20, "redis-server", 0.05)
        yield url
    finally:
        server.terminate()
        server.wait(20)


@contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """A PostgreSQL schema of our own, dropped afterwards; SQLite URLs pass through."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if not url.startswith("postgresql"):
        yield url
        return
    schema = f"expq_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


class Processes:
    """Worker processes in their own groups; all stopped on exit."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.started = folder, []

    def start(self, command: list[str], env: dict[str, str], name: str) -> Path:
        log = self.folder / f"{name}.log"
        with log.open("ab") as out:
            self.started.append(
                subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            )  # fmt: skip
        return log

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.started = []


def expq_workers(
    processes: Processes, env: dict[str, str], count: int, loglevel: str = "INFO"
) -> list[Path]:
    """`count` expq workers; INFO logs each run's phase timings, which (b) reads."""
    command = [sys.executable, "-m", "service", "worker", "--queues", "cpu",
               "--concurrency", "1", "--loglevel", loglevel]  # fmt: skip
    return [processes.start(command, env, f"expq-worker-{i}") for i in range(count)]


def noop_workers(processes: Processes, env: dict[str, str], count: int) -> None:
    command = [sys.executable, "-m", "celery", "-A", "benchmarks.fleet_noop", "worker",
               "-Q", "noop", "-c", "1", "-P", "prefork", "--loglevel", "WARNING",
               "--without-gossip", "--without-mingle"]  # fmt: skip
    for i in range(count):
        processes.start([*command, "-n", f"noop{i}@%h"], env, f"noop-worker-{i}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def noop_round_trips(count: int) -> list[float]:
    from benchmarks.fleet_noop import noop

    noop.delay().get(timeout=60)  # warm: connections, the pool process
    times = []
    for _ in range(count):
        started = time.perf_counter()
        noop.delay().get(timeout=60)
        times.append(time.perf_counter() - started)
    return times


def noop_burst(count: int) -> float:
    from benchmarks.fleet_noop import noop

    noop.delay().get(timeout=60)
    started = time.perf_counter()
    results = [noop.delay() for _ in range(count)]
    for result in results:
        result.get(timeout=120)
    return count / (time.perf_counter() - started)


class Submitter:
    def __init__(self, database_url: str, broker_url: str) -> None:
        from service.db import get_engine
        from service.submit import prepare_spec
        from workers.app import make_app

        self.engine = get_engine(database_url)
        self.app = make_app(broker_url)
        self.spec, self.files = prepare_spec(TINY, None, None)

    def submit(self, experiment: str) -> int:
        from service.store import NewRun
        from service.submit import submit_spec

        return submit_spec(
            self.engine, self.app, self.spec, self.files, NewRun(experiment, "cpu")
        ).id

    def status(self, run_id: int) -> str:
        from service.store import run_statuses

        return run_statuses(self.engine, [run_id])[run_id]


def run_times(engine, experiment: str) -> list[tuple]:  # noqa: ANN001
    """(id, created, started, finished) of an experiment's runs, in seconds since the epoch."""
    from sqlalchemy import select

    from service.db import session_scope
    from service.records import as_utc
    from service.schema import Experiment, Run

    query = (
        select(Run.run_id, Run.created_at, Run.started_at, Run.finished_at, Run.status)
        .join(Experiment, Run.experiment_id == Experiment.experiment_id)
        .where(Experiment.name == experiment)
    )
    with session_scope(engine) as session:
        rows = session.execute(query).all()
    assert all(row.status == "succeeded" for row in rows), {row.status for row in rows}
    return [
        (
            row.run_id,
            *(as_utc(t).timestamp() for t in (row.created_at, row.started_at, row.finished_at)),
        )
        for row in rows
    ]


def measure_latency(submitter: Submitter, broker: str, count: int) -> dict:
    """Each job is submitted to an idle fleet: after the previous one finished and its message
    was acked (kombu's Redis transport holds a delivered message in `unacked` until the ack)."""
    import redis

    from service.store import get_run

    broker_client = redis.Redis.from_url(broker)

    def finished(run_id: int) -> bool:
        return submitter.status(run_id) == "succeeded" and broker_client.hlen("unacked") == 0

    for _ in range(10):  # warm: torch in the pool processes, connections everywhere
        run_id = submitter.submit("warm-up")
        wait_until(lambda r=run_id: finished(r), 60, "a warm-up run")
    latencies, submits = [], []
    for _ in range(count):
        submitted = time.time()
        run_id = submitter.submit("latency")
        submits.append(time.time() - submitted)
        wait_until(lambda r=run_id: finished(r), 60, "a latency run", 0.005)
        latencies.append(get_run(submitter.engine, run_id).started_at.timestamp() - submitted)
    return {"start": latencies, "submit": submits}


def measure_throughput(submitter: Submitter, logs: list[Path], count: int) -> dict:
    warm = [submitter.submit("warm-up") for _ in range(4)]
    for run_id in warm:
        wait_until(lambda r=run_id: submitter.status(r) == "succeeded", 60, "a warm-up run")
    started = time.time()
    ids = [submitter.submit("throughput") for _ in range(count)]
    wait_until(lambda: submitter.status(ids[-1]) in ("succeeded", "failed"), 600, "the last run",
               0.05)  # fmt: skip
    from service.store import run_statuses

    wait_until(
        lambda: set(run_statuses(submitter.engine, ids).values()) == {"succeeded"},
        600,
        "every run",
        0.05,
    )
    rows = run_times(submitter.engine, "throughput")
    finished = max(row[3] for row in rows)
    phases = {}
    for log in logs:
        for match in PHASES.finditer(log.read_text(errors="replace")):
            phases[int(match.group(1))] = [float(v) for v in match.groups()[1:]]
    per_job = [phases[row[0]] for row in rows if row[0] in phases]
    return {
        "jobs_per_s": count / (finished - started),
        "submit_s": rows and (max(row[1] for row in rows) - started),
        "queue_ms": statistics.median((row[2] - row[1]) * 1000 for row in rows),
        "phases_ms": [statistics.median(job[i] for job in per_job) for i in range(4)],
        "run_ms": statistics.median((row[3] - row[2]) * 1000 for row in rows),
        "measured": len(per_job),
    }


def machine(argv: list[str], load: tuple[float, ...]) -> list[str]:
    import celery
    import torch

    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    return [
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: `{uname}`, {os.cpu_count()} CPUs, load average at start "
        + " ".join(f"{value:.2f}" for value in load)
        + " (other jobs on a shared machine inflate every figure here)",
        f"- python {platform.python_version()}, celery {celery.__version__}, "
        f"torch {torch.__version__}, {redis_version.stdout.split(' sha')[0]}",
        f"- command: `{' '.join(['python -m benchmarks.fleet_speed', *argv])}`",
    ]


def report(
    args,
    argv: list[str],
    database: str,
    latency: dict,
    round_trips: list[float],
    throughput: dict,
    burst: float,
    load: tuple[float, ...],
) -> str:  # noqa: ANN001
    start_ms = [v * 1000 for v in latency["start"]]
    pickup_ms = [(a - b) * 1000 for a, b in zip(latency["start"], latency["submit"], strict=True)]
    trip_ms = [v * 1000 for v in round_trips]
    ratio = statistics.median(start_ms) / statistics.median(trip_ms)
    claim, setup, train, writes = throughput["phases_ms"]
    lines = [
        "# Fleet speed: expq against plain Celery on the same Redis",
        "",
        *machine(argv, load),
        f"- database: {database} (a fresh schema); broker: a private redis-server, no persistence",
        "",
        "## (a) Latency on an idle fleet",
        "",
        f"2 expq workers (concurrency 1) and 1 Celery no-op worker, all at log level WARNING; "
        f"{args.latency_jobs} jobs one at a time, each after the previous one finished and its "
        "message was acked, after 10 warm-up jobs. expq: from `submit_spec` (insert, publish) "
        "to the claim. Celery: `noop.delay().get()`, the whole round trip.",
        "",
        "| measure | median ms | p95 ms |",
        "|---|---:|---:|",
        f"| expq submit-to-start | {statistics.median(start_ms):.2f} | "
        f"{percentile(start_ms, 0.95):.2f} |",
        f"| of which `submit_spec` (insert + publish) | "
        f"{statistics.median(latency['submit']) * 1000:.2f} | "
        f"{percentile([v * 1000 for v in latency['submit']], 0.95):.2f} |",
        f"| of which publish-to-start (broker, worker, claim) | "
        f"{statistics.median(pickup_ms):.2f} | {percentile(pickup_ms, 0.95):.2f} |",
        f"| Celery no-op round trip | {statistics.median(trip_ms):.2f} | "
        f"{percentile(trip_ms, 0.95):.2f} |",
        "",
        f"expq / Celery (median): **{ratio:.2f}x** (target ≤ {LATENCY_TARGET:g}x: "
        f"{'met' if ratio <= LATENCY_TARGET else 'NOT met'})",
        "",
        "expq's submit includes the durable insert of the run (on PostgreSQL one statement, "
        "committed before the message goes out: the database is the source of truth), which a "
        "Celery no-op has no counterpart for; publish-to-start is the part that compares with "
        "Celery's own delivery.",
        "",
        "## (b) Throughput",
        "",
        f"{args.jobs} one-epoch tiny jobs ({', '.join(f'{k}={v}' for k, v in TINY.items())}) "
        "submitted back to back from one process, through 2 expq workers (concurrency 1 each); "
        f"{args.jobs} Celery no-op tasks through 2 Celery workers (concurrency 1 each).",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| expq jobs/s, end to end (first submit → last finished) | "
        f"**{throughput['jobs_per_s']:.1f}** |",
        f"| Celery no-op tasks/s (burst, results back) | {burst:.1f} |",
        f"| time to submit all {args.jobs} | {throughput['submit_s']:.2f} s |",
        "",
        f"Target ≥ {THROUGHPUT_TARGET:g} jobs/s: "
        f"{'met' if throughput['jobs_per_s'] >= THROUGHPUT_TARGET else 'NOT met'}.",
        "",
        f"Time per job, medians over {throughput['measured']} runs:",
        "",
        "| phase | ms | from |",
        "|---|---:|---|",
        f"| queue (submitted → claimed) | {throughput['queue_ms']:.1f} | database timestamps |",
        f"| claim (the conditional UPDATE, then the spec validated) | {claim:.1f} | runner log |",
        f"| setup (data) | {setup:.1f} | runner log |",
        f"| training (fit, minus its writes) | {train:.1f} | runner log |",
        f"| writes (epoch losses + summary; the terminal status) | {writes:.1f} | runner log |",
        f"| claimed → finished | {throughput['run_ms']:.1f} | database timestamps |",
        "",
        f"Queue time is long by design here: {args.jobs} jobs arrive in a burst faster than two "
        "workers drain them, so most wait behind others; claim, training and writes are each "
        "job's own cost.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    load = os.getloadavg()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")
    folder = Path(tempfile.mkdtemp(prefix="expq-fleet-"))
    processes = Processes(folder)
    with private_redis(folder) as broker, fresh_database(args.database_url) as database:
        env = {
            **os.environ,
            "EXPQ_HOME": str(folder / "home"),
            "EXPQ_DATABASE_URL": database,
            "EXPQ_BROKER_URL": broker,
            "FLEET_NOOP_BROKER": broker,
            "OMP_NUM_THREADS": "1",
            "EXPQ_FUSE": "1",  # each job alone, its phases in the runner's log line
        }
        os.environ.update({k: env[k] for k in ("EXPQ_HOME", "FLEET_NOOP_BROKER")})
        submitter = Submitter(database, broker)
        try:
            # The same log level as the no-op workers: no per-message log line on either side.
            expq_workers(processes, env, 2, "WARNING")
            noop_workers(processes, env, 1)
            print("latency ...", flush=True)
            latency = measure_latency(submitter, broker, args.latency_jobs)
            round_trips = noop_round_trips(args.latency_jobs)
            processes.stop_all()
            print("throughput ...", flush=True)
            logs = expq_workers(processes, env, 2)
            throughput = measure_throughput(submitter, logs, args.jobs)
            processes.stop_all()
            noop_workers(processes, env, 2)
            burst = noop_burst(args.jobs)
        finally:
            processes.stop_all()
        where = re.sub(r"\?.*", "", database.split("@")[-1])
        text = report(args, argv, where, latency, round_trips, throughput, burst, load)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
