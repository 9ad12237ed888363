"""The top-up rule: `parallel` trials in flight, exactly `trials` in all, whichever way a trial
ends, one transaction with the ending, and the same points for the same history."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from study_support import finish_trial, study_plan, study_state, trials
from support import Split, claim

from service.db import get_engine, session_scope
from service.lifecycle import cancel_run, finish_run, reap_expired_leases, record_epoch
from service.records import utcnow
from service.schema import Run, RunStatus, Study
from service.search_space import Objective, Space
from service.study import create_study, stop_study, study_status
from service.study_topup import told_state, trial_history


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list:
    """What the endings publish, instead of a broker."""
    sent: list = []
    monkeypatch.setattr("service.lifecycle.publish_trials", sent.extend)
    return sent


def _in_flight(engine) -> list:  # noqa: ANN001
    return [t for t in trials(engine) if t.status in ("queued", "running")]


def test_a_study_starts_with_parallel_trials_and_ends_with_exactly_n(engine, published) -> None:  # noqa: ANN001
    _, added = create_study(engine, study_plan(trials=5, parallel=2))
    assert [t.trial_number for t in trials(engine)] == [0, 1]
    assert [d.run_id for d in added] == [t.run_id for t in trials(engine)]
    value = 1.0
    while _in_flight(engine):
        finish_trial(engine, _in_flight(engine)[0].run_id, value)
        value -= 0.1
        assert len(_in_flight(engine)) == min(
            2, 5 - sum(t.status != "queued" for t in trials(engine))
        )
    ended = trials(engine)
    assert [t.trial_number for t in ended] == [0, 1, 2, 3, 4]
    assert all(t.status == "succeeded" for t in ended)
    assert [d.run_id for d in published] == [t.run_id for t in ended[2:]]
    assert study_state(engine) == "done"


def test_each_trial_is_a_valid_spec_inside_the_space(engine, published) -> None:  # noqa: ANN001
    create_study(engine, study_plan(trials=4, parallel=4))
    for trial in trials(engine):
        assert trial.spec["hidden"] in (8, 16) and 0.001 <= trial.spec["lr"] <= 0.5
        assert trial.spec["task"] == "binary" and trial.spec["epochs"] == 2
        assert trial.queue == "cpu" and trial.status == "queued"


def test_failed_cancelled_and_pruned_trials_count_and_the_study_goes_on(engine, published) -> None:  # noqa: ANN001
    create_study(engine, study_plan(trials=5, parallel=2))
    first, second = _in_flight(engine)
    finish_trial(engine, first.run_id, 0.5, status="failed")
    assert cancel_run(engine, second.run_id) == "queued"
    third = _in_flight(engine)[0]
    finish_trial(engine, third.run_id, 0.9, status="pruned")
    assert len(trials(engine)) == 5 and len(_in_flight(engine)) == 2
    assert len(published) == 3


def test_the_reaper_giving_up_on_a_trial_tops_the_study_up(engine, published) -> None:  # noqa: ANN001
    create_study(engine, study_plan(trials=3, parallel=1, max_attempts=1))
    (only,) = trials(engine)
    claim(engine, only.run_id, lease=0.01)
    dispatches = reap_expired_leases(engine, now=utcnow() + timedelta(seconds=5))
    after = trials(engine)
    assert after[0].status == "failed" and "gave up after 1 attempts" in after[0].error
    assert [d.run_id for d in dispatches] == [after[1].run_id]
    assert after[1].status == "queued" and after[1].trial_number == 1


def test_a_reaper_pass_tops_up_a_study_whose_trial_ended_outside_the_transition(
    engine,  # noqa: ANN001
    published,  # noqa: ANN001
) -> None:
    create_study(engine, study_plan(trials=3, parallel=1))
    (only,) = trials(engine)
    with session_scope(engine) as session:  # as an older expq, or a hand edit, would
        session.execute(
            update(Run).where(Run.run_id == only.run_id).values(status=RunStatus.CANCELLED)
        )
    assert len(trials(engine)) == 1
    dispatches = reap_expired_leases(engine)
    assert [t.trial_number for t in trials(engine)] == [0, 1]
    assert [d.run_id for d in dispatches] == [trials(engine)[1].run_id]
    assert reap_expired_leases(engine) == []  # a second pass adds nothing


def test_stop_cancels_queued_trials_adds_none_and_lets_running_ones_finish(
    engine,  # noqa: ANN001
    published,  # noqa: ANN001
) -> None:
    create_study(engine, study_plan(trials=6, parallel=3))
    running = _in_flight(engine)[0]
    attempt = claim(engine, running.run_id)
    cancelled = stop_study(engine, "st")
    assert sorted(cancelled) == sorted(t.run_id for t in trials(engine)[1:])
    assert study_state(engine) == "stopped"
    finish_run(engine, running.run_id, attempt, RunStatus.SUCCEEDED)
    assert len(trials(engine)) == 3 and not _in_flight(engine) and published == []
    assert trials(engine)[0].status == "succeeded"


def test_a_point_that_makes_an_invalid_spec_is_a_failed_trial(engine, published) -> None:  # noqa: ANN001
    space = Space((), frozenset(), {"hidden": (8, 0)})  # hidden 0 no spec accepts
    create_study(engine, study_plan(search="grid", space=space, trials=2, parallel=2))
    by_hidden = {t.spec["hidden"]: t for t in trials(engine)}
    assert by_hidden[0].status == "failed" and "invalid spec" in by_hidden[0].error
    assert by_hidden[8].status == "queued" and len(_in_flight(engine)) == 1
    finish_trial(engine, by_hidden[8].run_id, 0.3)
    assert study_state(engine) == "done"


def test_a_grid_study_proposes_every_point_once(engine, published) -> None:  # noqa: ANN001
    space = Space((), frozenset(), {"hidden": (8, 16, 32), "layers": (1, 2)})
    create_study(engine, study_plan(search="grid", space=space, trials=6, parallel=2))
    while _in_flight(engine):
        finish_trial(engine, _in_flight(engine)[0].run_id, 0.5)
    points = sorted((t.spec["hidden"], t.spec["layers"]) for t in trials(engine))
    assert points == [(h, n) for h in (8, 16, 32) for n in (1, 2)]


def _history_driven(url: str, search: str) -> list[dict]:
    """A study driven to its end, each time finishing its oldest trial in flight with a value
    the point decides; the points proposed, in trial order."""
    engine = get_engine(url)
    create_study(engine, study_plan(search=search, trials=8, parallel=2))
    while in_flight := _in_flight(engine):
        trial = in_flight[0]
        finish_trial(
            engine, trial.run_id, abs(trial.spec["lr"] - 0.05) + trial.spec["hidden"] / 100
        )
    return [{"lr": t.spec["lr"], "hidden": t.spec["hidden"]} for t in trials(engine)]


@pytest.mark.parametrize("search", ["tpe", "gp", "cmaes", "random"])
def test_the_same_seed_and_completion_order_propose_the_same_points(
    tmp_path: Path,
    published,  # noqa: ANN001
    search: str,
) -> None:
    first = _history_driven(f"sqlite:///{tmp_path / 'a.db'}", search)
    again = _history_driven(f"sqlite:///{tmp_path / 'b.db'}", search)
    assert first == again
    assert len({(p["lr"], p["hidden"]) for p in first}) == len(first)  # no point twice


def _end_at_once(engine, run_ids: list[int]) -> list[BaseException]:  # noqa: ANN001
    """Finish the runs from one thread each, released together; the errors raised."""
    start = threading.Barrier(len(run_ids))
    errors: list[BaseException] = []

    def end(run_id: int) -> None:
        try:
            start.wait()
            finish_trial(engine, run_id, 0.5)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller's assert
            errors.append(exc)

    threads = [threading.Thread(target=end, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_two_trials_ending_at_once_never_add_the_same_trial(engine, published) -> None:  # noqa: ANN001
    create_study(engine, study_plan(trials=12, parallel=4))
    for _ in range(2):
        ending = _in_flight(engine)
        assert len(ending) == 4
        assert _end_at_once(engine, [t.run_id for t in ending]) == []
    numbers = [t.trial_number for t in trials(engine)]
    assert numbers == list(range(12))
    assert len(_in_flight(engine)) == 4 and len(published) == 8


def test_a_run_status_reads_to_the_sampler_as_a_trial_state() -> None:
    assert told_state("succeeded", 0.3) == "COMPLETE"
    assert told_state("succeeded", None) == "FAIL"
    assert told_state("pruned", None) == "PRUNED"
    assert [told_state(s, None) for s in ("failed", "diverged", "cancelled")] == ["FAIL"] * 3
    assert told_state("queued", None) == told_state("running", None) == "RUNNING"


def test_a_metric_objective_is_read_per_trial_and_the_best_is_the_highest(
    engine,  # noqa: ANN001
    published,  # noqa: ANN001
) -> None:
    objective = Objective("best_val_accuracy", "maximize")
    create_study(engine, study_plan(trials=3, parallel=1, objective=objective))
    for accuracy in (0.6, 0.9, 0.7):
        (trial,) = _in_flight(engine)
        attempt = claim(engine, trial.run_id)
        val = Split(0.5, metric=accuracy, metrics={"accuracy": accuracy})
        finish_run(
            engine,
            trial.run_id,
            attempt,
            "succeeded",
            last_epoch=(1, {"train": val, "val": val}, None),
        )
    best = study_status(engine, "st")["best"]
    assert (best["trial"], best["value"]) == (1, 0.9)


def test_a_pruned_trial_is_told_as_pruned_with_its_recorded_curve(engine, published) -> None:  # noqa: ANN001
    maximised = Objective("best_val_loss", "maximize")
    create_study(engine, study_plan(trials=3, parallel=1, objective=maximised))
    (trial,) = _in_flight(engine)
    attempt = claim(engine, trial.run_id)
    record_epoch(engine, trial.run_id, attempt, 1, {"train": Split(0.9), "val": Split(0.8)})
    finish_run(
        engine,
        trial.run_id,
        attempt,
        "pruned",
        last_epoch=(2, {"train": Split(0.7), "val": Split(0.6)}, None),
    )
    with session_scope(engine) as session:
        study = session.scalars(select(Study)).one()
        told = trial_history(session, study, Space.from_json(study.space))
    assert [(t.number, t.state) for t in told] == [(0, "PRUNED"), (1, "RUNNING")]
    assert told[0].curve == {1: -0.8, 2: -0.6}  # negated: the study maximises
    assert told[0].params == {"hidden": trial.spec["hidden"], "lr": trial.spec["lr"]}
