"""A short seeded campaign on every change, on each broker: every fault kind once (the network
ones only where network namespaces can be made), and the checker finds no violation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from benchmarks.chaos.campaign import run_campaign
from benchmarks.chaos.network import unavailable_reason
from benchmarks.chaos.plan import draw, fault_kinds
from benchmarks.chaos.services import RABBITMQ_SERVER

SEED = 13


def _rabbitmq_missing() -> str | None:
    """Why the campaign cannot start a RabbitMQ node of its own, if it cannot."""
    return None if Path(RABBITMQ_SERVER).exists() else f"{RABBITMQ_SERVER} is not installed"


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_short_campaign_injects_every_fault_and_breaks_no_promise(
    broker: str, tmp_path: Path
) -> None:
    if broker == "rabbitmq" and (missing := _rabbitmq_missing()):
        pytest.skip(missing)
    reason = unavailable_reason()
    if reason:
        warnings.warn(f"chaos: network faults skipped: {reason}", stacklevel=1)
    kinds = fault_kinds(reason is None)
    plan = draw(SEED, len(kinds) + 1, broker, network=reason is None)  # each kind once
    plan.save(tmp_path / "plan.json")
    outcome = run_campaign(plan, tmp_path, print, quiet_seconds=120)
    print(outcome.report)
    assert outcome.verdict.valid, outcome.report
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert {event["kind"] for event in history if event["type"] == "fault"} == set(kinds)
    assert outcome.verdict.acknowledged > 0 and outcome.verdict.compared > 0
