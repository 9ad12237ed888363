"""The checker: judges a campaign's history and final state against expq's promises.

Jepsen's total-queue checker is the model: what was submitted must come out. Each rule has a
name; a violation names the rule, the run and what was seen.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from benchmarks.chaos.history import TERMINAL, Final, LossRow, RunState
from benchmarks.chaos.plan import RunPlan

RULES = (
    "lost",  # an acknowledged submit (or a stored unacknowledged one) that is not terminal
    "unsettled",  # not one terminal state with no lease and the winning attempt's rows complete
    "left_terminal",  # a terminal state later left
    "duplicate_rows",  # an (epoch, split, timestep) recorded twice by one attempt
    "stale_write",  # a row of an older attempt written after a newer attempt's
    "reference",  # a succeeded run's losses differ from its fault-free reference
    "not_quiet",  # queued or running after the quiet period
    "worker_dead",  # a worker neither alive nor restarted
)


@dataclass(frozen=True)
class Violation:
    rule: str
    run_id: int | None
    detail: str

    def __str__(self) -> str:
        where = f"run {self.run_id}: " if self.run_id is not None else ""
        return f"{self.rule}: {where}{self.detail}"


@dataclass
class Verdict:
    violations: list[Violation] = field(default_factory=list)
    attempted: int = 0
    acknowledged: int = 0
    lost: int = 0
    unexpected: int = 0  # runs in the database that no submit asked for
    recovered: int = 0  # unacknowledged submits whose run exists and ended terminal
    duplicated: int = 0  # extra claims: trainings beyond each run's first
    compared: int = 0  # succeeded runs checked against their reference

    @property
    def valid(self) -> bool:
        return not self.violations

    def jepsen_line(self) -> str:
        return (
            f"{{:valid? {str(self.valid).lower()}, :attempt-count {self.attempted}, "
            f":acknowledged-count {self.acknowledged}, :lost-count {self.lost}, "
            f":unexpected-count {self.unexpected}, :recovered-count {self.recovered}, "
            f":duplicated-trainings {self.duplicated}, :reference-checked {self.compared}, "
            f":violations {len(self.violations)}}}"
        )


def _submits(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each plan key's submit outcome: the last of its invoke/ok/fail/info events."""
    outcome: dict[str, dict[str, Any]] = {}
    for event in events:
        if event["type"] == "submit":
            outcome[event["key"]] = event
    return outcome


def _splits(rows: list[LossRow]) -> dict[str, list[LossRow]]:
    by_split: dict[str, list[LossRow]] = defaultdict(list)
    for row in rows:
        by_split[row.split].append(row)
    return by_split


def _check_settled(run: RunState, plan: RunPlan | None) -> list[Violation]:
    found = []
    if run.status not in TERMINAL or run.leased:
        found.append(
            Violation("unsettled", run.run_id, f"status {run.status}, leased={run.leased}")
        )
    if plan is None:
        return found
    winning = [row for row in run.losses if row.attempt == run.attempt]
    expected_epochs = int(plan.options["epochs"])
    if run.status == "succeeded" and run.epochs_done != expected_epochs:
        found.append(
            Violation(
                "unsettled",
                run.run_id,
                f"succeeded with {run.epochs_done} of {expected_epochs} epochs",
            )
        )
    per_split = run.epochs_done * (plan.timesteps + 1)
    by_split = _splits(winning)
    for split in ("train", "val"):
        count = len(by_split.get(split, []))
        if count != per_split:
            found.append(
                Violation(
                    "unsettled",
                    run.run_id,
                    f"attempt {run.attempt} has {count} {split} loss rows; "
                    f"{run.epochs_done} epochs x (T+1={plan.timesteps + 1}) = {per_split}",
                )
            )
    return found


def _check_rows(run: RunState) -> list[Violation]:
    found = []
    seen: set[tuple] = set()
    for row in run.losses:
        cell = (row.attempt, row.epoch, row.split, row.timestep)
        if cell in seen:
            found.append(
                Violation(
                    "duplicate_rows",
                    run.run_id,
                    f"attempt {row.attempt} epoch {row.epoch} {row.split} "
                    f"timestep {row.timestep} recorded twice",
                )
            )
        seen.add(cell)
    first_of: dict[int, int] = {}
    last_of: dict[int, int] = {}
    for row in run.losses:
        first_of[row.attempt] = min(first_of.get(row.attempt, row.loss_id), row.loss_id)
        last_of[row.attempt] = max(last_of.get(row.attempt, row.loss_id), row.loss_id)
    for older in last_of:
        for newer in first_of:
            if newer > older and last_of[older] > first_of[newer]:
                found.append(
                    Violation(
                        "stale_write",
                        run.run_id,
                        f"attempt {older} wrote row {last_of[older]} after attempt {newer} "
                        f"wrote row {first_of[newer]}",
                    )
                )
    return found


def _values(rows: list[LossRow]) -> list[tuple]:
    return sorted(
        (
            (row.split, row.epoch, row.timestep or 0, row.timestep is None, row.value)
            for row in rows
        ),
        key=lambda cell: cell[:4],
    )


def _check_reference(run: RunState, key: str, final: Final) -> tuple[list[Violation], bool]:
    reference = final.references.get(key)
    if reference is None:
        return [Violation("reference", run.run_id, f"no fault-free reference for {key}")], False
    ours = _values([row for row in run.losses if row.attempt == run.attempt])
    theirs = _values(reference)
    if ours == theirs:
        return [], True
    differ = next(
        (
            f"{a[0]} epoch {a[1]}: {a[4]!r} != {b[4]!r}"
            for a, b in zip(ours, theirs, strict=False)
            if a != b
        ),
        f"{len(ours)} rows != {len(theirs)}",
    )
    return [Violation("reference", run.run_id, f"losses differ from the reference: {differ}")], True


def _left_terminal(events: list[dict[str, Any]]) -> list[Violation]:
    found, ended = [], {}
    for event in events:
        if event["type"] != "observe":
            continue
        run_id, status = event["run_id"], event["status"]
        if run_id in ended and status != ended[run_id]:
            found.append(
                Violation(
                    "left_terminal",
                    run_id,
                    f"{ended[run_id]} at t={event['t']}, then {status}",
                )
            )
        if status in TERMINAL:
            ended.setdefault(run_id, status)
    return found


def _written_after_a_newer_claim(events: list[dict[str, Any]]) -> list[Violation]:
    """Rows of attempt a that appeared in a pass after the one that first saw a newer claim:
    the rows were committed after that claim (the observer reads runs before rows)."""
    found, claimed_in, counts = [], {}, {}  # claimed_in: run -> (newest attempt, its first pass)
    for event in events:
        run_id = event.get("run_id")
        if event["type"] == "observe" and event["attempt"] > claimed_in.get(run_id, (0, 0))[0]:
            claimed_in[run_id] = (event["attempt"], event.get("passed", 0))
        elif event["type"] == "rows":
            attempt, before = event["attempt"], counts.get((run_id, event["attempt"]), 0)
            counts[(run_id, attempt)] = event["count"]
            newest, seen_in = claimed_in.get(run_id, (0, 0))
            if attempt < newest and event["passed"] > seen_in and event["count"] > before:
                found.append(
                    Violation(
                        "stale_write",
                        run_id,
                        f"attempt {attempt} went from {before} to {event['count']} rows at "
                        f"t={event['t']}, after attempt {newest}'s claim was seen",
                    )
                )
    return found


def check(runs: list[RunPlan], events: list[dict[str, Any]], final: Final) -> Verdict:
    """Every rule of RULES over one campaign; the Jepsen-style counts beside the violations."""
    verdict = Verdict()
    plans = {run.key: run for run in runs}
    by_key = {state.key: state for state in final.runs.values() if state.key}
    submits = _submits(events)
    verdict.attempted = sum(
        1 for event in events if event["type"] == "submit" and event["phase"] == "invoke"
    )
    for key, event in submits.items():
        run = by_key.get(key)
        acknowledged = event["phase"] == "ok"
        verdict.acknowledged += acknowledged
        if acknowledged and run is None:
            verdict.lost += 1
            verdict.violations.append(
                Violation("lost", event.get("run_id"), f"{key} acknowledged, not in the database")
            )
        elif run is not None and run.status not in TERMINAL:
            verdict.lost += 1
            verdict.violations.append(
                Violation("lost", run.run_id, f"{key} ({event['phase']}) is {run.status}")
            )
        elif run is not None and not acknowledged:
            verdict.recovered += 1
    for state in final.runs.values():
        plan = plans.get(state.key or "")
        if plan is None:
            verdict.unexpected += 1
        verdict.duplicated += max(0, state.attempt - 1)
        verdict.violations += _check_settled(state, plan)
        verdict.violations += _check_rows(state)
        if state.status in ("queued", "running"):
            verdict.violations.append(
                Violation("not_quiet", state.run_id, f"still {state.status} after the quiet period")
            )
        if state.status == "succeeded" and plan is not None:
            found, compared = _check_reference(state, plan.key, final)
            verdict.violations += found
            verdict.compared += compared
    verdict.violations += _left_terminal(events)
    verdict.violations += _written_after_a_newer_claim(events)
    for index, alive in enumerate(final.workers_alive):
        if not alive:
            verdict.violations.append(
                Violation("worker_dead", None, f"worker {index} is not running")
            )
    return verdict
