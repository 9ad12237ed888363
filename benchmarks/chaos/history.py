"""The campaign's record: every operation and fault as it happened (a JSON line each), the
runs' states as the observer saw them change, and the final state the checker judges."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

TERMINAL = ("succeeded", "failed", "diverged", "cancelled", "pruned")


class History:
    """Events appended in order, each with `t`, seconds since the campaign started."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._file = path.open("w", encoding="utf-8") if path else None

    def now(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def record(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"t": self.now(), "type": type_, **fields}
        with self._lock:
            self.events.append(event)
            if self._file is not None:
                self._file.write(json.dumps(event) + "\n")
                self._file.flush()
        return event

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    @staticmethod
    def load(path: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@dataclass(frozen=True)
class LossRow:
    loss_id: int
    attempt: int
    epoch: int
    split: str
    timestep: int | None
    value: float | None


@dataclass
class RunState:
    run_id: int
    key: str | None
    status: str
    attempt: int
    epochs_done: int
    leased: bool
    losses: list[LossRow] = field(default_factory=list)


@dataclass
class Final:
    """What the database and the fleet hold once the campaign is quiet."""

    runs: dict[int, RunState]
    references: dict[str, list[LossRow]]  # plan key -> the fault-free reference's winning rows
    workers_alive: list[bool]

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": {str(run_id): asdict(run) for run_id, run in self.runs.items()},
            "references": {
                key: [asdict(row) for row in rows] for key, rows in self.references.items()
            },
            "workers_alive": self.workers_alive,
        }


def _states(engine: Engine, experiment: str) -> dict[int, RunState]:
    from service.db import session_scope
    from service.schema import Experiment, Loss, Run

    with session_scope(engine, read_only=True) as session:
        runs = session.execute(
            select(Run)
            .join(Experiment, Experiment.experiment_id == Run.experiment_id)
            .where(Experiment.name == experiment)
        ).scalars()
        states = {
            run.run_id: RunState(
                run.run_id,
                run.idempotency_key,
                run.status,
                run.attempt,
                run.epochs_done,
                run.lease_owner is not None or run.lease_expires_at is not None,
            )
            for run in runs
        }
        if states:
            rows = session.execute(
                select(Loss).where(Loss.run_id.in_(list(states))).order_by(Loss.loss_id)
            ).scalars()
            for row in rows:
                states[row.run_id].losses.append(
                    LossRow(row.loss_id, row.attempt, row.epoch, row.split, row.timestep, row.value)
                )
    return states


def collect_final(
    engine: Engine, experiment: str, reference_experiment: str, workers_alive: list[bool]
) -> Final:
    runs = _states(engine, experiment)
    references = {}
    for state in _states(engine, reference_experiment).values():
        if state.status == "succeeded" and state.key:
            references[state.key.removeprefix("ref-")] = [
                row for row in state.losses if row.attempt == state.attempt
            ]
    return Final(runs, references, workers_alive)


class Observer(threading.Thread):
    """Polls the runs every `interval` seconds and records each change of status, attempt,
    epochs or worker: the timeline that recovery times and "a terminal state is never left"
    are judged on."""

    def __init__(self, engine: Engine, history: History, interval: float = 0.25) -> None:
        super().__init__(name="chaos-observer", daemon=True)
        self.engine = engine
        self.history = history
        self.interval = interval
        self.stopped = threading.Event()
        self.seen: dict[int, tuple] = {}
        self.rows: dict[tuple[int, int], int] = {}
        self.passes = 0

    def snapshot(self) -> None:
        """One pass: the runs first, then their loss rows per attempt, each event numbered by
        its pass. Rows read after a pass's runs were committed after anything that pass saw."""
        from service.db import session_scope
        from service.schema import Loss, Run

        with session_scope(self.engine, read_only=True) as session:
            runs = session.execute(
                select(Run.run_id, Run.status, Run.attempt, Run.epochs_done, Run.worker)
            ).all()
            counts = session.execute(
                select(Loss.run_id, Loss.attempt, func.count()).group_by(Loss.run_id, Loss.attempt)
            ).all()
        self.passes += 1
        present = {run_id for run_id, *_ in runs}
        for run_id in [run_id for run_id in self.seen if run_id not in present]:
            # A submit whose publish failed deletes the run it stored: it was never acknowledged.
            del self.seen[run_id]
            self.history.record("observe", run_id=run_id, status="deleted", attempt=0,
                                epochs_done=0, worker=None, passed=self.passes)  # fmt: skip
        for run_id, *state in runs:
            if self.seen.get(run_id) != tuple(state):
                self.seen[run_id] = tuple(state)
                status, attempt, epochs, worker = state
                self.history.record(
                    "observe",
                    run_id=run_id,
                    status=status,
                    attempt=attempt,
                    epochs_done=epochs,
                    worker=worker,
                    passed=self.passes,
                )
        for run_id, attempt, count in counts:
            if self.rows.get((run_id, attempt)) != count:
                self.rows[(run_id, attempt)] = count
                self.history.record(
                    "rows", run_id=run_id, attempt=attempt, count=count, passed=self.passes
                )

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.snapshot()
            except Exception:  # noqa: BLE001 - the database is being restarted: look again
                continue

    def stop(self) -> None:
        self.stopped.set()
        self.join()
