"""The campaign's report: per fault kind, what was injected, what it hit and how the runs came
back; the checker's verdict and its Jepsen-style line."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from benchmarks.chaos.checker import Verdict
from benchmarks.chaos.history import TERMINAL, Final
from benchmarks.chaos.plan import RUN_FAULTS


@dataclass
class FaultStats:
    injected: int = 0
    runs_hit: set[int] = field(default_factory=set)
    reclaims: int = 0
    outcomes: Counter = field(default_factory=Counter)
    recoveries: list[float] = field(default_factory=list)

    def row(self, kind: str) -> str:
        outcomes = ", ".join(f"{name} {count}" for name, count in sorted(self.outcomes.items()))
        if self.recoveries:
            recovery = f"{statistics.median(self.recoveries):.1f} / {max(self.recoveries):.1f}"
        else:
            recovery = "-"
        return (
            f"| {kind} | {self.injected} | {len(self.runs_hit)} | {self.reclaims} | "
            f"{outcomes or '-'} | {recovery} |"
        )


def _timelines(events: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    timelines: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event["type"] == "observe":
            timelines[event["run_id"]].append(event)
    return timelines


def _state_at(timeline: list[dict[str, Any]], t: float) -> dict[str, Any] | None:
    before = [event for event in timeline if event["t"] <= t]
    return before[-1] if before else None


def recovery_time(timeline: list[dict[str, Any]], healed: float) -> float | None:
    """Seconds from `healed` until the run next made progress (an epoch, a new claim or its
    end); None when it had already ended or was never seen after."""
    then = _state_at(timeline, healed)
    if then is not None and then["status"] in TERMINAL:
        return None
    for event in timeline:
        if event["t"] <= healed:
            continue
        if (
            then is None
            or event["status"] in TERMINAL
            or event["epochs_done"] > then["epochs_done"]
            or event["attempt"] > then["attempt"]
        ):
            return event["t"] - healed
    return None


def hit_runs(
    timelines: dict[int, list[dict[str, Any]]], start: dict[str, Any], end: float
) -> set[int]:
    """The runs training on the fault's target (any worker, for a fault on a service) at its
    start or at any time before it healed."""
    nodes = start.get("nodes")
    hit = set(start["runs"])
    for run_id, timeline in timelines.items():
        state = _state_at(timeline, start["t"])
        during = [state] if state else []
        during += [event for event in timeline if start["t"] < event["t"] <= end]
        if any(
            event["status"] == "running" and (nodes is None or event["worker"] in nodes)
            for event in during
        ):
            hit.add(run_id)
    return hit


def fault_table(events: list[dict[str, Any]], final: Final) -> dict[str, FaultStats]:
    stats: dict[str, FaultStats] = defaultdict(FaultStats)
    timelines = _timelines(events)
    by_key = {run.key: run for run in final.runs.values() if run.key}
    starts = {}
    for event in events:
        if event["type"] == "fault" and event["phase"] == "start":
            starts[event["id"]] = event
            stats[event["kind"]].injected += 1
        elif event["type"] == "fault" and event["phase"] == "end":
            start = starts.get(event["id"])
            if start is None:
                continue
            entry = stats[event["kind"]]
            for run_id in sorted(hit_runs(timelines, start, event["t"])):
                entry.runs_hit.add(run_id)
                run = final.runs.get(run_id)
                then = _state_at(timelines[run_id], start["t"])
                if run is not None:
                    entry.outcomes[run.status] += 1
                    entry.reclaims += max(0, run.attempt - (then["attempt"] if then else 0))
                took = recovery_time(timelines[run_id], event["t"])
                if took is not None:
                    entry.recoveries.append(took)
        elif event["type"] in RUN_FAULTS and event.get("phase") == "done":
            entry = stats[event["type"]]
            entry.injected += 1
            run = by_key.get(event["key"])
            if run is not None:
                entry.runs_hit.add(run.run_id)
                entry.outcomes[run.status] += 1
    return dict(stats)


def markdown(verdict: Verdict, table: dict[str, FaultStats], final: Final) -> str:
    lines = [
        "| fault | injected | runs hit | re-claims | outcomes of the runs hit | "
        "recovery s (median / max) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [table[kind].row(kind) for kind in sorted(table)]
    statuses = Counter(run.status for run in final.runs.values())
    lines += [
        "",
        "All runs: " + ", ".join(f"{name} {count}" for name, count in sorted(statuses.items())),
        "",
        verdict.jepsen_line(),
    ]
    if verdict.violations:
        lines += ["", "Violations:"] + [f"- {violation}" for violation in verdict.violations]
    return "\n".join(lines) + "\n"
