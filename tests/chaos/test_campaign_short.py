"""A short seeded campaign on every change: every fault kind once (the network ones only where
network namespaces can be made), and the checker finds no violation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from benchmarks.chaos.campaign import run_campaign
from benchmarks.chaos.network import unavailable_reason
from benchmarks.chaos.plan import draw, fault_kinds

SEED = 13
RUNS = 16  # one more than the fault kinds: each is drawn once


def test_a_short_campaign_on_redis_injects_every_fault_and_breaks_no_promise(
    tmp_path: Path,
) -> None:
    reason = unavailable_reason()
    if reason:
        warnings.warn(f"chaos: network faults skipped: {reason}", stacklevel=1)
    plan = draw(SEED, RUNS, "redis", network=reason is None)
    plan.save(tmp_path / "plan.json")
    outcome = run_campaign(plan, tmp_path, print, quiet_seconds=120)
    print(outcome.report)
    assert outcome.verdict.valid, outcome.report
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    injected = {event["kind"] for event in history if event["type"] == "fault"}
    assert injected == set(fault_kinds("redis", plan.network))
    assert outcome.verdict.acknowledged > 0 and outcome.verdict.compared > 0
