"""The nemesis: injects each planned fault at its time and heals it after its duration.

Faults may overlap, on one target too: each target counts the faults in force on it (a paused
group stays stopped until its last pause ends, a killed worker is restarted when its last kill
ends, a namespace's rules are every cut in force), so one fault's end never heals another.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

from sqlalchemy import Engine, select

from benchmarks.chaos.cluster import Cluster, Worker
from benchmarks.chaos.history import History
from benchmarks.chaos.network import Cut
from benchmarks.chaos.plan import FaultPlan

log = logging.getLogger(__name__)


class Nemesis:
    def __init__(self, cluster: Cluster, engine: Engine, history: History) -> None:
        self.cluster = cluster
        self.engine = engine
        self.history = history
        self.stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pg_down = 0
        self._broker_down = 0
        self._broker_stalled = 0

    def start(self, faults: list[FaultPlan], paced_by: Callable[[float], bool]) -> None:
        """Inject each fault once its time has come and `paced_by(its time)` says the workload
        is as far along as the plan has it then: on a machine too slow to submit on schedule,
        faults still fall among the runs instead of before them."""
        self._paced_by = paced_by
        for number, fault in enumerate(faults):
            thread = threading.Thread(
                target=self._run, args=(number, fault), name=f"nemesis-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def stop(self) -> None:
        self.stopped.set()
        self.join()

    def _running_runs(self, worker: Worker | None) -> list[int]:
        """The runs training now (on `worker`'s nodes only, when given): those the fault hits."""
        from service.db import session_scope
        from service.schema import Run

        query = select(Run.run_id).where(Run.status == "running")
        if worker is not None:
            query = query.where(Run.worker.in_(worker.node_names() or [""]))
        try:
            with session_scope(self.engine, read_only=True) as session:
                return list(session.execute(query).scalars())
        except Exception:  # noqa: BLE001 - the database is down (another fault): none known
            return []

    def _target(self, planned: int | None) -> Worker | None:
        """The planned worker, or, when it trains nothing and another does, the first that
        does: a fault on an idle worker tests little, and on a loaded machine submits are
        slow enough that most workers are idle most of the time."""
        if planned is None:
            return None
        workers = self.cluster.workers
        order = [workers[planned], *(w for w in workers if w is not workers[planned])]
        return next((w for w in order if self._running_runs(w)), workers[planned])

    def _run(self, number: int, fault: FaultPlan) -> None:
        while self.history.now() < fault.at or not self._paced_by(fault.at):
            if self.stopped.wait(0.1):
                return
        worker = self._target(fault.worker)
        hit = self._running_runs(worker)
        inject, heal = self._actions(fault, worker)
        detail = None
        try:
            detail = inject()
        except Exception as exc:  # noqa: BLE001 - recorded: a fault that could not be injected
            detail = f"not injected: {exc}"
        self.history.record(
            "fault",
            phase="start",
            id=number,
            kind=fault.kind,
            worker=worker.index if worker is not None else None,
            nodes=worker.node_names() if worker is not None else None,
            runs=hit,
            detail=detail,
        )
        self.stopped.wait(fault.duration)
        try:
            heal()
        except Exception as exc:  # noqa: BLE001 - heal_all at the end undoes it anyway
            log.warning("fault %d (%s): heal failed: %s", number, fault.kind, exc)
        self.history.record(
            "fault",
            phase="end",
            id=number,
            kind=fault.kind,
            worker=None if worker is None else worker.index,
        )

    def _actions(
        self, fault: FaultPlan, worker: Worker | None
    ) -> tuple[Callable[[], str | None], Callable[[], None]]:
        kind = fault.kind
        if kind == "kill_training":
            return (lambda: self._kill_training(worker)), _nothing
        if kind == "kill_worker":
            return (lambda: self._kill_worker(worker)), (lambda: self._restart(worker))
        if kind in ("pause_short", "pause_long"):
            return (lambda: self._pause(worker)), (lambda: self._resume(worker))
        if kind == "broker_restart":
            return self._broker_stop, self._broker_start
        if kind == "broker_stall":
            return self._broker_pause, self._broker_resume
        if kind == "pg_kill_backends":
            return (
                lambda: f"{self.cluster.postgres.terminate_backends()} sessions ended"
            ), _nothing
        if kind == "pg_restart":
            return self._pg_stop, self._pg_start
        cut = self._cut(fault)
        return (lambda: self._add_cut(worker, cut)), (lambda: self._remove_cut(worker, cut))

    def _cut(self, fault: FaultPlan) -> Cut:
        db, broker = self.cluster.postgres.port, self.cluster.broker_port
        return {
            "partition_db": Cut("partition", (db,)),
            "partition_broker": Cut("partition", (broker,)),
            "isolate": Cut("isolate"),
            "drop_replies_db": Cut("drop_replies", (db,)),
            "reset_db": Cut("reset", (db,)),
            "reset_broker": Cut("reset", (broker,)),
            "flaky": Cut("flaky", (), fault.percent),
        }[fault.kind]

    def _kill_training(self, worker: Worker) -> str:
        pids = worker.pool_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return f"pool processes {pids} killed"

    def _kill_worker(self, worker: Worker) -> str:
        with self.cluster.lock:
            worker.killed += 1
            self.cluster.signal_worker(worker, signal.SIGKILL)
        return "worker killed"

    def _restart(self, worker: Worker) -> None:
        with self.cluster.lock:
            worker.killed -= 1
            if worker.killed == 0:
                if worker.process is not None:
                    worker.process.wait()
                self.cluster.start_worker(worker)
                if worker.paused:
                    self.cluster.signal_worker(worker, signal.SIGSTOP)

    def _pause(self, worker: Worker) -> None:
        with self.cluster.lock:
            worker.paused += 1
            self.cluster.signal_worker(worker, signal.SIGSTOP)

    def _resume(self, worker: Worker) -> None:
        with self.cluster.lock:
            worker.paused -= 1
            if worker.paused == 0:
                self.cluster.signal_worker(worker, signal.SIGCONT)

    def _add_cut(self, worker: Worker, cut: Cut) -> None:
        with self.cluster.lock:
            worker.cuts.append(cut)
            self.cluster.set_cuts(worker)

    def _remove_cut(self, worker: Worker, cut: Cut) -> None:
        with self.cluster.lock:
            worker.cuts.remove(cut)
            self.cluster.set_cuts(worker)

    def _broker_stop(self) -> None:
        with self.cluster.lock:
            self._broker_down += 1
            if self._broker_down == 1:
                self.cluster.broker_service.stop()

    def _broker_start(self) -> None:
        with self.cluster.lock:
            self._broker_down -= 1
            if self._broker_down == 0:
                self.cluster.broker_service.start()
                if self._broker_stalled:
                    self.cluster.broker_service.pause()

    def _broker_pause(self) -> None:
        with self.cluster.lock:
            self._broker_stalled += 1
            self.cluster.broker_service.pause()

    def _broker_resume(self) -> None:
        with self.cluster.lock:
            self._broker_stalled -= 1
            if self._broker_stalled == 0:
                self.cluster.broker_service.resume()

    def _pg_stop(self) -> None:
        with self.cluster.lock:
            self._pg_down += 1
            if self._pg_down == 1:
                self.cluster.postgres.stop("fast")

    def _pg_start(self) -> None:
        with self.cluster.lock:
            self._pg_down -= 1
            if self._pg_down == 0:
                self.cluster.postgres.start()


def _nothing() -> None:
    return None
