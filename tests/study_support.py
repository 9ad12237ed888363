"""Small helpers of the study tests: a plan, trials by number, a trial finished with a value."""

from __future__ import annotations

from typing import Any

from support import Split, claim


def study_plan(**changes: Any):  # noqa: ANN201 - service.study.StudyPlan
    """A TPE study of 6 binary MLP trials, 2 at once, over lr (log) and hidden in {8, 16}."""
    from service.search_space import Objective, Space
    from service.study import StudyPlan
    from service.sweep import Range

    fields: dict[str, Any] = {
        "experiment": "st",
        "search": "tpe",
        "objective": Objective("best_val_loss", "minimize"),
        "trials": 6,
        "parallel": 2,
        "seed": 7,
        "space": Space((Range("lr", 0.001, 0.5, log=True),), frozenset(), {"hidden": (8, 16)}),
        "base_spec": {"task": "binary", "model": "mlp", "epochs": "2", "device": "cpu"},
        "queue": "cpu",
        "priority": 0,
        "max_attempts": 3,
    }
    return StudyPlan(**{**fields, **changes})


def trials(engine, experiment: str = "st") -> list[Any]:  # noqa: ANN001
    """The study's runs rows, by trial number."""
    from sqlalchemy import select

    from service.db import session_scope
    from service.schema import Experiment, Run

    with session_scope(engine) as session:
        return list(
            session.scalars(
                select(Run)
                .join(Experiment)
                .where(Experiment.name == experiment, Run.trial_number.is_not(None))
                .order_by(Run.trial_number)
            )
        )


def finish_trial(engine, run_id: int, value: float, status: str = "succeeded") -> None:  # noqa: ANN001
    """Claim the run and end it after one epoch whose val loss is `value`."""
    from service.lifecycle import finish_run

    attempt = claim(engine, run_id)
    epoch = (1, {"train": Split(value), "val": Split(value)}, None)
    finish_run(engine, run_id, attempt, status, last_epoch=epoch)


def study_state(engine, experiment: str = "st") -> str:  # noqa: ANN001
    from service.study import study_status

    return study_status(engine, experiment)["state"]
