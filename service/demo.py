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
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, `kill`, a closed terminal


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
    kill_worker(process)


def kill_worker(process: subprocess.Popen) -> None:
    """SIGKILL the worker's whole group at once and reap its main process.

    Safe for the database: every write a worker makes is one transaction, which a killed
    process leaves uncommitted and the database rolls back whole.
    """
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
    """None of the demo's runs may wait for the user's next real worker."""
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


def _abandon(engine, experiment: str, worker: subprocess.Popen) -> None:  # noqa: ANN001
    """Interrupted, or the worker died: kill the worker, then cancel what it left unfinished.

    In this order, so that the cancels meet no writer and nothing waits on a warm shutdown:
    stopped with SIGTERM after its cancels, the worker took 2-7 s of Celery's pool teardown on
    a loaded 2-core machine, for training that is thrown away. A second Ctrl-C (or SIGTERM)
    meanwhile is ignored: it would leave runs queued.
    """
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in _STOP_SIGNALS}
    try:
        click.echo("stopping the demo worker ...")
        kill_worker(worker)
        _cancel_unfinished(engine, experiment)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def _stopped_like_ctrl_c() -> Iterator[None]:
    """SIGTERM (`kill`) and SIGHUP (a closed terminal) stop the demo as Ctrl-C does; without
    this they ended it at once and left its worker training. A signal already ignored (nohup)
    stays ignored."""
    previous = {}
    for signum in _STOP_SIGNALS[1:]:
        if signal.getsignal(signum) == signal.SIG_DFL:
            previous[signum] = signal.signal(signum, _raise_interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def demo_specs(epochs: int | None = None) -> list[dict[str, object]]:
    """What the demo submits for each pair, in DEMO_PAIRS order: the task's defaults on the CPU."""
    override = {} if epochs is None else {"epochs": epochs}
    return [
        {"task": task, "model": model, "device": "cpu", **override} for task, model in DEMO_PAIRS
    ]


def run_demo(epochs: int | None = None) -> int:
    """The demo's exit code: 0 when all eight runs succeeded. `epochs` overrides the task
    defaults' (a quick look; the defaults are what learns)."""
    from service.db import get_engine

    settings = load_settings()
    try:
        settings.home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExpqError(f"cannot create EXPQ_HOME {settings.home}: {exc.strerror}") from None
    env = {**os.environ, "EXPQ_DATABASE_URL": settings.database_url, "OMP_NUM_THREADS": "1"}
    engine = get_engine(settings.database_url)  # the schema, before the worker looks for it
    experiment = f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    with _stopped_like_ctrl_c(), _broker_url() as broker_url:
        env["EXPQ_BROKER_URL"] = broker_url
        os.environ["EXPQ_BROKER_URL"] = broker_url
        click.echo(f"broker:   {mask_url(broker_url)}")
        click.echo(f"database: {mask_url(settings.database_url)}")
        worker = start_worker(env, settings.home / "demo-worker.log")
        try:
            _watch(engine, _submit(engine, broker_url, experiment, epochs), worker)
            code = _report(engine, experiment)
            click.echo("stopping the demo worker ...")
            stop_worker(worker)
            return code
        except BaseException:
            _abandon(engine, experiment, worker)
            raise


@contextmanager
def _broker_url() -> Iterator[str]:
    if os.environ.get("EXPQ_BROKER_URL"):
        yield os.environ["EXPQ_BROKER_URL"]
        return
    with embedded_broker() as url:
        yield url


def _submit(engine, broker_url: str, experiment: str, epochs: int | None) -> list[int]:  # noqa: ANN001
    """The demo's runs, queued: slowest first (the sequence RNNs take most of the minute), so
    that the worker's two processes finish at about the same time."""
    from service.store import NewRun
    from service.submit import prepare_spec, submit_spec
    from workers.app import make_app

    app = make_app(broker_url)
    run_ids = []
    for raw in reversed(demo_specs(epochs)):
        spec, files = prepare_spec(raw, None, None)
        new = NewRun(experiment=experiment, queue="cpu")
        run_ids.append(submit_spec(engine, app, spec, files, new).id)
    click.echo(f"submitted {len(run_ids)} runs to experiment {experiment}; training ...")
    return run_ids


def _report(engine, experiment: str) -> int:  # noqa: ANN001
    """Print the results table; the exit code."""
    from service.store import list_runs

    results = sorted(
        list_runs(engine, experiment=experiment, limit=None),
        key=lambda run: DEMO_PAIRS.index((run.task, run.model)),
    )
    emit_runs(results, "table", title=f"expq demo: {experiment}")
    succeeded = sum(run.status == "succeeded" for run in results)
    click.echo(f"{succeeded}/{len(results)} runs succeeded")
    click.echo(f"open them in the dashboard: expq ui --experiment {experiment}")
    return 0 if succeeded == len(results) else 1
