"""Adaptive-search studies in the store: made by `expq sweep --search`, seen, stopped.

A study has no controller: its trials are added by whatever ends one of them (service/
study_topup.py), so the command that makes it may exit, or be killed, once it has committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, case, func, select

from service.db import session_scope
from service.errors import InputError
from service.records import Dispatch, utcnow
from service.run_insert import experiment_id_for
from service.schema import Experiment, Run, RunStatus, Study, StudyState
from service.search_space import Objective, Space
from service.study_topup import top_up

# How each run status counts in `sweep status`: a trial that ended without a result (failed,
# diverged, cancelled) counts as failed.
_COUNTED = {
    RunStatus.SUCCEEDED: "succeeded",
    RunStatus.RUNNING: "running",
    RunStatus.QUEUED: "queued",
    RunStatus.PRUNED: "pruned",
}
COUNT_KEYS = ("succeeded", "running", "queued", "pruned", "failed")


@dataclass(frozen=True)
class StudyPlan:
    """What `expq sweep --search` asks for, checked."""

    experiment: str
    search: str
    objective: Objective
    trials: int
    parallel: int
    seed: int
    space: Space
    base_spec: dict[str, Any]
    queue: str
    priority: int
    max_attempts: int
    tags: dict[str, str] = field(default_factory=dict)
    pruner: str | None = None
    prune_min_epochs: int | None = None
    prune_reduction: int | None = None


def create_study(engine: Engine, plan: StudyPlan) -> tuple[int, list[Dispatch]]:
    """Store the study and its first `parallel` trials in one transaction: the study's id and
    the trials to publish. InputError when the experiment already has a study."""
    with session_scope(engine) as session:
        connection = session.connection()
        experiment_id = experiment_id_for(connection, plan.experiment)
        taken = session.scalar(select(Study.study_id).where(Study.experiment_id == experiment_id))
        if taken is not None:
            raise InputError(
                f"experiment {plan.experiment} already has a study; name another --experiment"
            )
        study = Study(
            experiment_id=experiment_id,
            search=plan.search,
            objective=plan.objective.name,
            direction=plan.objective.direction,
            trials=plan.trials,
            parallel=plan.parallel,
            seed=plan.seed,
            space=plan.space.to_json(),
            base_spec=plan.base_spec,
            queue=plan.queue,
            priority=plan.priority,
            max_attempts=plan.max_attempts,
            tags=plan.tags,
            pruner=plan.pruner,
            prune_min_epochs=plan.prune_min_epochs,
            prune_reduction=plan.prune_reduction,
            state=StudyState.ACTIVE,
            created_at=utcnow(),
        )
        session.add(study)
        session.flush()
        return study.study_id, top_up(session, study.study_id)


def _study_of(session: Any, experiment: str) -> Study:
    study = session.scalar(select(Study).join(Experiment).where(Experiment.name == experiment))
    if study is None:
        raise InputError(f"experiment {experiment} has no study (made by `expq sweep --search`)")
    return study


def stop_study(engine: Engine, experiment: str) -> list[int]:
    """Stop adding trials and cancel the queued ones (running ones finish); the ids cancelled.

    The study is marked stopped first, in a transaction of its own, so that the cancels, which
    lock each run and then the study as every ending does, add nothing.
    """
    from service.lifecycle import cancel_run

    with session_scope(engine) as session:
        study = _study_of(session, experiment)
        if study.state == StudyState.ACTIVE:
            study.state = StudyState.STOPPED
            study.finished_at = utcnow()
        study_id = study.study_id
    with session_scope(engine, read_only=True) as session:
        queued = session.scalars(
            select(Run.run_id).where(Run.study_id == study_id, Run.status == RunStatus.QUEUED)
        ).all()
    return [run_id for run_id in queued if cancel_run(engine, run_id) == RunStatus.QUEUED]


def study_status(engine: Engine, experiment: str) -> dict[str, Any]:
    """`sweep status` as JSON: the study's settings, its trials counted by outcome, the best."""
    from service.filters import lookup_field, value_of

    with session_scope(engine, read_only=True) as session:
        study = _study_of(session, experiment)
        counted = case(
            *((Run.status == status, key) for status, key in _COUNTED.items()), else_="failed"
        )
        counts = dict.fromkeys(COUNT_KEYS, 0)
        for key, count in session.execute(
            select(counted, func.count()).where(Run.study_id == study.study_id).group_by(counted)
        ):
            counts[key] = count
        value = value_of(lookup_field(study.objective))
        order = value.desc() if study.direction == "maximize" else value.asc()
        best = session.execute(
            select(Run.run_id, Run.trial_number, Run.spec, value.label("value"))
            .where(Run.study_id == study.study_id, Run.status == RunStatus.SUCCEEDED)
            .where(value.is_not(None))
            .order_by(order, Run.trial_number)
            .limit(1)
        ).first()
        names = Space.from_json(study.space).names
        return {
            "experiment": experiment,
            "search": study.search,
            "objective": study.objective,
            "direction": study.direction,
            "trials": study.trials,
            "parallel": study.parallel,
            "state": study.state,
            "pruner": study.pruner,
            "counts": counts,
            "best": None
            if best is None
            else {
                "id": best.run_id,
                "trial": best.trial_number,
                "value": best.value,
                "params": {name: best.spec[name] for name in names},
            },
        }
