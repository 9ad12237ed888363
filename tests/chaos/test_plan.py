"""The plan: drawn from the seed alone, saved before the campaign, replayed exactly."""

from __future__ import annotations

from pathlib import Path

from benchmarks.chaos.plan import FAULTS, NETWORK_FAULTS, Plan, draw


def test_the_same_seed_draws_the_same_plan_and_another_seed_another() -> None:
    assert draw(7, 40) == draw(7, 40)
    assert draw(7, 40) != draw(8, 40)


def test_a_saved_plan_replays_exactly(tmp_path: Path) -> None:
    plan = draw(11, 30)
    plan.save(tmp_path / "plan.json")
    assert Plan.load(tmp_path / "plan.json") == plan


def test_enough_runs_draw_every_fault_kind_and_the_run_faults() -> None:
    plan = draw(3, 60)
    assert {fault.kind for fault in plan.faults} == set(FAULTS)
    assert any(run.cancel_after is not None for run in plan.runs)
    assert any(run.kill_submit_after is not None for run in plan.runs)


def test_without_namespaces_no_network_fault_is_drawn() -> None:
    kinds = {fault.kind for fault in draw(3, 60, network=False).faults}
    assert kinds and not kinds & set(NETWORK_FAULTS)


def test_a_rabbitmq_campaign_restarts_and_stalls_its_own_node() -> None:
    rabbit = {fault.kind for fault in draw(3, 60, broker="rabbitmq").faults}
    assert {"broker_restart", "broker_stall"} <= rabbit
