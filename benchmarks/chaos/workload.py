"""The client side of the campaign: each planned run submitted by a real `expq submit` at its
time (some killed mid-call, some cancelled later), every call recorded as invoke then ok, fail
or info (Jepsen's: info is an outcome nobody knows)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterable

from benchmarks.chaos.cluster import Cluster
from benchmarks.chaos.history import History
from benchmarks.chaos.plan import RunPlan

EXPERIMENT = "chaos"
REFERENCE_EXPERIMENT = "chaos-reference"
CALL_TIMEOUT_SECONDS = 60.0
# Jepsen's clients: a fixed few, each with one call in flight. A process per planned run, all
# at once, starved a loaded 2-core machine: submits took a minute of waiting for the CPU.
CLIENTS = 2


def submit_command(run: RunPlan, experiment: str, key: str) -> list[str]:
    options = [item for name, value in run.options.items() for item in (f"--{name}", str(value))]
    return [
        sys.executable, "-m", "service", "submit", *options, "--device", "cpu",
        "--experiment", experiment, "--idempotency-key", key, "--json",
    ]  # fmt: skip


class Workload:
    def __init__(self, cluster: Cluster, history: History) -> None:
        self.cluster = cluster
        self.history = history
        self.stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pending_times: list[float] = []  # the planned times of runs not yet submitted

    def reached(self, at: float) -> bool:
        """Whether every run planned before `at` has been submitted (its call begun)."""
        return all(planned > at for planned in list(self._pending_times))

    def _call(self, command: list[str], kill_after: float | None = None) -> tuple[str, str]:
        """(phase, output): ok with stdout, fail with stderr's first line, info when killed
        or timed out."""
        process = subprocess.Popen(
            command,
            env=self.cluster.client_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = process.communicate(timeout=kill_after or CALL_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            return "info", "killed" if kill_after else "timed out"
        if process.returncode == 0:
            return "ok", out
        return "fail", (err.strip().splitlines() or [f"exit {process.returncode}"])[-1]

    def _submit(self, run: RunPlan) -> None:
        if self.stopped.wait(max(0.0, run.at - self.history.now())):
            return
        self.history.record("submit", phase="invoke", key=run.key)
        self._pending_times.remove(run.at)
        command = submit_command(run, EXPERIMENT, run.key)
        phase, output = self._call(command, run.kill_submit_after)
        if run.kill_submit_after is not None and phase == "info":
            self.history.record("kill_submit", phase="done", key=run.key)
        if phase != "ok":
            self.history.record("submit", phase=phase, key=run.key, error=output)
            return
        run_id = json.loads(output)["id"]
        self.history.record("submit", phase="ok", key=run.key, run_id=run_id)
        if run.cancel_after is not None and not self.stopped.wait(run.cancel_after):
            cancel = [sys.executable, "-m", "service", "runs", "cancel", str(run_id)]
            phase, output = self._call(cancel)
            self.history.record(
                "cancel", phase="done", key=run.key, run_id=run_id, outcome=phase, output=output
            )

    def start(self, runs: Iterable[RunPlan], clients: int = CLIENTS) -> None:
        """`clients` threads take the runs in time order, each calling one command at a time."""
        pending = sorted(runs, key=lambda run: run.at, reverse=True)
        self._pending_times = [run.at for run in pending]
        lock = threading.Lock()

        def client() -> None:
            while not self.stopped.is_set():
                with lock:
                    if not pending:
                        return
                    run = pending.pop()
                self._submit(run)

        for _ in range(clients):
            thread = threading.Thread(target=client, daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def submit_references(self, runs: list[RunPlan], parallel: int = 3) -> list[str]:
        """Each run's spec again, fault-free, keyed `ref-KEY`; the keys whose submit failed."""
        failed: list[str] = []
        pending = list(runs)
        lock = threading.Lock()

        def drain() -> None:
            while True:
                with lock:
                    if not pending:
                        return
                    run = pending.pop()
                phase, output = self._call(
                    submit_command(run, REFERENCE_EXPERIMENT, f"ref-{run.key}")
                )
                if phase != "ok":
                    with lock:
                        failed.append(f"{run.key}: {output}")

        threads = [threading.Thread(target=drain, daemon=True) for _ in range(parallel)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return failed
