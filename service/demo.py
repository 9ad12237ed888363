"""`expq demo`: an embedded broker, a real worker process, one run per task x model.

The runs take each task's defaults (models/defaults.py), the settings a user's first submit
gets: tuned to learn within a minute on 2 CPU cores, so the table shows what the networks
can do rather than a few epochs of noise.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click

from service.config import load_settings, mask_url
from service.errors import ExpqError
from service.output import emit_runs
from service.progress import TERMINAL, progress_line

DEMO_TASKS = ("binary", "sentiment", "captioning", "translation")
DEMO_MODELS = ("mlp", "rnn")
DEMO_PAIRS = tuple((task, model) for task in DEMO_TASKS for model in DEMO_MODELS)  # table order
WORKER_STOP_SECONDS = 15


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def embedded_broker() -> Iterator[str]:
    """A Redis-protocol server (fakeredis) on a free loopback port, for machines without Redis."""
    from fakeredis import TcpFakeServer

    server = TcpFakeServer(("127.0.0.1", free_port()), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, name="demo-broker", daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.server_address[1]}/0"
    finally:
        server.shutdown()
        server.server_close()


def start_worker(
    env: dict[str, str],
    log_path: Path,
    concurrency: int = 2,
    *,
    queues: str = "cpu,auto",
    loglevel: str = "WARNING",
) -> subprocess.Popen:
    """A real `expq worker` in its own process group, so that stopping it stops its children."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service",
                "worker",
                "--queues",
                queues,
                f"--concurrency={concurrency}",
                f"--loglevel={loglevel}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_worker(process: subprocess.Popen, timeout: float = WORKER_STOP_SECONDS) -> None:
    """SIGTERM the worker's group (a warm shutdown), then SIGKILL what is left.

    SIGCONT first: a group frozen with SIGSTOP would hold the SIGTERM until the timeout.
    """
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGCONT)
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _watch(engine, run_ids: list[int], worker: subprocess.Popen) -> None:  # noqa: ANN001
    from service.store import get_runs

    shown: dict[int, str] = {}
    while True:
        runs = get_runs(engine, run_ids)
        for run in runs:
            line = f"  {run.task:<11} {run.model:<3} {progress_line(run)}"
            if shown.get(run.id) != line:
                shown[run.id] = line
                click.echo(line)
        if all(run.status in TERMINAL for run in runs):
            return
        if worker.poll() is not None:
            raise click.ClickException(f"the demo worker exited with code {worker.returncode}")
        time.sleep(0.5)


def _cancel_unfinished(engine, experiment: str) -> None:  # noqa: ANN001
    """The demo was interrupted: none of its runs may wait for the user's next real worker."""
    from service.lifecycle import cancel_run
    from service.store import list_runs

    unfinished = [
        run.id
        for run in list_runs(engine, experiment=experiment, limit=None)
        if run.status not in TERMINAL
    ]
    cancelled = [run_id for run_id in unfinished if cancel_run(engine, run_id) not in TERMINAL]
    if cancelled:
        click.echo(f"cancelled {len(cancelled)} unfinished demo runs", err=True)


def demo_specs(epochs: int | None = None) -> list[dict[str, object]]:
    """What the demo submits for each pair, in DEMO_PAIRS order: the task's defaults on the CPU."""
    override = {} if epochs is None else {"epochs": epochs}
    return [
        {"task": task, "model": model, "device": "cpu", **override} for task, model in DEMO_PAIRS
    ]


def run_demo(epochs: int | None = None) -> int:
    """The demo's exit code: 0 when all eight runs succeeded. `epochs` overrides the task
    defaults' (a quick look; the defaults are what learns)."""
    settings = load_settings()
    try:
        settings.home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExpqError(f"cannot create EXPQ_HOME {settings.home}: {exc.strerror}") from None
    env = {**os.environ, "EXPQ_DATABASE_URL": settings.database_url, "OMP_NUM_THREADS": "1"}
    with _broker_url() as broker_url:
        env["EXPQ_BROKER_URL"] = broker_url
        os.environ["EXPQ_BROKER_URL"] = broker_url
        click.echo(f"broker:   {mask_url(broker_url)}")
        click.echo(f"database: {mask_url(settings.database_url)}")
        worker = start_worker(env, settings.home / "demo-worker.log")
        try:
            return _submit_and_watch(settings, broker_url, epochs, worker)
        finally:
            click.echo("stopping the demo worker ...")
            stop_worker(worker)


@contextmanager
def _broker_url() -> Iterator[str]:
    if os.environ.get("EXPQ_BROKER_URL"):
        yield os.environ["EXPQ_BROKER_URL"]
        return
    with embedded_broker() as url:
        yield url


def _submit_and_watch(  # noqa: ANN001
    settings, broker_url: str, epochs: int | None, worker: subprocess.Popen
) -> int:
    from service.db import get_engine
    from service.store import NewRun, list_runs
    from service.submit import prepare_spec, submit_spec
    from workers.app import make_app

    engine = get_engine(settings.database_url)
    app = make_app(broker_url)
    experiment = f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    run_ids: list[int] = []
    try:
        # Slowest first (the sequence RNNs take most of the minute), so that the worker's two
        # processes finish at about the same time.
        for raw in reversed(demo_specs(epochs)):
            spec, files = prepare_spec(raw, None, None)
            new = NewRun(experiment=experiment, queue="cpu")
            run_ids.append(submit_spec(engine, app, spec, files, new).id)
        click.echo(f"submitted {len(run_ids)} runs to experiment {experiment}; training ...")
        _watch(engine, run_ids, worker)
    except BaseException:
        _cancel_unfinished(engine, experiment)
        raise
    results = sorted(
        list_runs(engine, experiment=experiment, limit=None),
        key=lambda run: DEMO_PAIRS.index((run.task, run.model)),
    )
    emit_runs(results, "table", title=f"expq demo: {experiment}")
    succeeded = sum(run.status == "succeeded" for run in results)
    click.echo(f"{succeeded}/{len(results)} runs succeeded")
    click.echo(f"open them in the dashboard: expq ui --experiment {experiment}")
    return 0 if succeeded == len(results) else 1
