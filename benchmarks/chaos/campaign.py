"""One campaign from plan to verdict: fleet up, workload and nemesis together, heal, quiet
period, fault-free references, then the checker over what was recorded."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, func, select

from benchmarks.chaos.checker import Verdict, check
from benchmarks.chaos.cluster import Cluster
from benchmarks.chaos.history import History, Observer, collect_final
from benchmarks.chaos.nemesis import Nemesis
from benchmarks.chaos.plan import Plan
from benchmarks.chaos.report import fault_table, markdown
from benchmarks.chaos.workload import EXPERIMENT, REFERENCE_EXPERIMENT, Workload

READY_TIMEOUT_SECONDS = 180.0


@dataclass
class Outcome:
    verdict: Verdict
    report: str
    out: Path
    seconds: float


def _unsettled(engine: Engine) -> int:
    from service.db import session_scope
    from service.schema import Run

    with session_scope(engine, read_only=True) as session:
        query = select(func.count()).where(Run.status.in_(("queued", "running")))
        return session.execute(query).scalar_one()


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except Exception:  # noqa: BLE001 - a database still restarting: ask again
            pass
        time.sleep(0.5)
    return False


def run_campaign(
    plan: Plan, out: Path, say: Callable[[str], None], quiet_seconds: float = 240.0
) -> Outcome:
    """Run `plan` (already saved in `out`); the verdict and the Markdown report."""
    from service.db import get_engine

    started = time.monotonic()
    cluster = Cluster(out / "cluster", plan.broker, plan.network)
    history = History(out / "history.jsonl")
    try:
        cluster.start()
        engine = get_engine(cluster.postgres.url())
        if not _wait(lambda: all(w.node_names() for w in cluster.workers), READY_TIMEOUT_SECONDS):
            raise RuntimeError(f"the workers did not start; see {out / 'cluster'}/worker-*.log")
        say(f"fleet ready in {time.monotonic() - started:.0f} s: {len(plan.runs)} runs, "
            f"{len(plan.faults)} faults over {plan.window:g} s")  # fmt: skip
        history.started = time.monotonic()
        observer = Observer(engine, history)
        observer.start()
        workload, nemesis = Workload(cluster, history), Nemesis(cluster, engine, history)
        workload.start(plan.runs)
        nemesis.start(plan.faults, workload.reached)
        workload.join()
        nemesis.join()
        cluster.heal_all()
        history.record("healed")
        say(f"faults healed at t={history.now():.0f} s; waiting for the runs to settle")
        settled = _wait(lambda: _unsettled(engine) == 0, quiet_seconds)
        history.record("quiet", settled=settled)
        final_first = collect_final(engine, EXPERIMENT, REFERENCE_EXPERIMENT, [])
        succeeded = {run.key for run in final_first.runs.values() if run.status == "succeeded"}
        references = [run for run in plan.runs if run.key in succeeded]
        say(f"t={history.now():.0f} s: {len(references)} fault-free references")
        failed = workload.submit_references(references)
        for failure in failed:
            history.record("reference_submit_failed", detail=failure)
        _wait(lambda: _unsettled(engine) == 0, quiet_seconds)
        observer.stop()
        observer.snapshot()
        final = collect_final(
            engine,
            EXPERIMENT,
            REFERENCE_EXPERIMENT,
            [worker.alive() and not worker.paused for worker in cluster.workers],
        )
    finally:
        history.close()
        cluster.stop()
    (out / "final.json").write_text(json.dumps(final.to_json()) + "\n", encoding="utf-8")
    verdict = check(plan.runs, history.events, final)
    report = markdown(verdict, fault_table(history.events, final), final)
    (out / "report.md").write_text(report, encoding="utf-8")
    return Outcome(verdict, report, out, time.monotonic() - started)
