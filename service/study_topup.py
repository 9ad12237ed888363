"""The study top-up: add trials until `parallel` are in flight, never past `trials` in all.

It runs inside the transaction that ends a trial (service/lifecycle.py `_end`), inside each
reaper pass, and inside the one that creates the study, under the study's row lock (SELECT
... FOR NO KEY UPDATE on PostgreSQL; on SQLite every writer holds the whole database, BEGIN
IMMEDIATE). So two processes never count the same free slot, and the trials a top-up adds
commit together with the state change that freed their slot, or not at all. Each new trial's
point comes from a sampler rebuilt from the study's runs: finished trials in the order they
finished, then those in flight, seeded by (study seed, trial number). The study lives in
expq's tables and nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from service.records import Dispatch, utcnow
from service.run_insert import add_runs, new_run_values
from service.schema import Loss, Run, RunStatus, Study, StudyState
from service.search_space import Space, make_sampler, point_value

log = logging.getLogger(__name__)

_IN_FLIGHT = (RunStatus.QUEUED, RunStatus.RUNNING)


@dataclass(frozen=True)
class Told:
    """A trial as the sampler hears of it."""

    number: int  # the trial number
    params: dict[str, Any]
    state: str  # COMPLETE, PRUNED, FAIL or RUNNING (optuna.trial.TrialState names)
    value: float | None = None
    curve: dict[int, float] = field(default_factory=dict)  # a pruned trial's val loss by epoch


def told_state(status: str, value: float | None) -> str:
    """How a trial's run status reads to the sampler: a success without an objective value
    (a field the run never recorded) is a failure, like a failed, diverged or cancelled run."""
    if status in _IN_FLIGHT:
        return "RUNNING"
    if status == RunStatus.PRUNED:
        return "PRUNED"
    if status == RunStatus.SUCCEEDED and value is not None:
        return "COMPLETE"
    return "FAIL"


def trial_history(session: Session, study: Study, space: Space) -> list[Told]:
    """What the sampler is told: every trial of the study, the ended ones in the order they
    ended, then those in flight."""
    from service.filters import lookup_field, value_of

    objective = lookup_field(study.objective)
    rows = session.execute(
        select(
            Run.run_id, Run.trial_number, Run.status, Run.spec, value_of(objective).label("value")
        )
        .where(Run.study_id == study.study_id)
        .order_by(Run.finished_at.is_(None), Run.finished_at, Run.trial_number)
    ).all()
    curves = _pruned_curves(session, study.study_id)
    sign = -1.0 if study.direction == "maximize" else 1.0
    told = []
    for run_id, number, status, spec, value in rows:
        state = told_state(status, value)
        curve = {epoch: sign * loss for epoch, loss in curves.get(run_id, {}).items()}
        told.append(
            Told(
                number,
                {name: spec[name] for name in space.names},
                state,
                value if state == "COMPLETE" else None,
                curve if state == "PRUNED" else {},
            )
        )
    return told


def _pruned_curves(session: Session, study_id: int) -> dict[int, dict[int, float]]:
    """The val loss by epoch of each pruned trial (its recorded attempt): what it was pruned on."""
    rows = session.execute(
        select(Loss.run_id, Loss.epoch, Loss.value)
        .join(Run, and_(Run.run_id == Loss.run_id, Run.attempt == Loss.attempt))
        .where(
            Run.study_id == study_id,
            Run.status == RunStatus.PRUNED,
            Loss.split == "val",
            Loss.timestep.is_(None),
            Loss.value.is_not(None),
        )
    ).all()
    curves: dict[int, dict[int, float]] = {}
    for run_id, epoch, value in rows:
        curves.setdefault(run_id, {})[epoch] = value
    return curves


def propose(
    search: str, seed: int, direction: str, space: Space, history: list[Told], number: int
) -> dict[str, Any]:
    """The point of trial `number`, from a fresh sampler told `history` in order."""
    import optuna
    from optuna.storages import InMemoryStorage
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = space.distributions()
    sampler = make_sampler(search, seed, number, space)
    study = optuna.create_study(storage=InMemoryStorage(), sampler=sampler, direction=direction)
    for trial in history:
        system_attrs = {}
        if search == "grid":  # trial k was given the grid's k-th point
            system_attrs = {"grid_id": trial.number, "search_space": space.grid()}
        study.add_trial(
            create_trial(
                state=TrialState[trial.state],
                params=trial.params,
                distributions=distributions,
                value=trial.value,
                intermediate_values=trial.curve,
                system_attrs=system_attrs,
            )
        )
    asked = study.ask(distributions)
    return {name: point_value(asked.params[name], distributions[name]) for name in space.names}


def _counts(session: Session, study_id: int) -> tuple[int, int]:
    """(trials created, trials in flight)."""
    created, in_flight = session.execute(
        select(func.count(), func.count().filter(Run.status.in_(_IN_FLIGHT))).where(
            Run.study_id == study_id
        )
    ).one()
    return created, in_flight


def _new_trial(study: Study, number: int, point: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    """The run of trial `number` (values, params, tags): queued, or failed at once when its
    point makes an invalid spec (it counts against the study's trials, like any failure)."""
    from models.spec import SpecError, spec_from_dict

    raw = {**study.base_spec, **point}
    values = {"study_id": study.study_id, "trial_number": number}
    try:
        spec = spec_from_dict(raw)
    except SpecError as exc:
        row = new_run_values(
            raw, queue=study.queue, priority=study.priority, max_attempts=study.max_attempts
        )
        failed = {"status": RunStatus.FAILED, "error": f"invalid spec: {exc}"}
        return {**row, **values, **failed, "finished_at": row["created_at"]}, {}, study.tags
    row = new_run_values(
        spec.to_dict(), queue=study.queue, priority=study.priority, max_attempts=study.max_attempts
    )
    return {**row, **values, "finished_at": None}, spec.params(), study.tags


def top_up(session: Session, study_id: int, *, skip_locked: bool = False) -> list[Dispatch]:
    """Add the trials that bring the study back to `parallel` in flight (at most `trials` in
    all) and mark it done once every trial ended; the new queued runs, to publish after the
    commit. Locks the study's row; with `skip_locked`, a study another transaction holds is
    left alone (that transaction tops it up)."""
    # FOR NO KEY UPDATE on PostgreSQL, not FOR UPDATE: the ending transaction may already hold
    # FOR KEY SHARE on this row (the foreign-key check of its second UPDATE of the run), and so
    # may a concurrent one; FOR UPDATE conflicts with that share lock and deadlocked the two.
    study = session.scalars(
        select(Study)
        .where(Study.study_id == study_id)
        .with_for_update(skip_locked=skip_locked, key_share=True)
        .execution_options(populate_existing=True)
    ).first()
    if study is None:
        return []
    created, in_flight = _counts(session, study_id)
    added: list[Dispatch] = []
    if study.state == StudyState.ACTIVE and in_flight < study.parallel and created < study.trials:
        space = Space.from_json(study.space)
        history = trial_history(session, study, space)
        while in_flight < study.parallel and created < study.trials:
            point = propose(
                study.search, study.seed, study.direction, space, history, number=created
            )
            values, params, tags = _new_trial(study, created, point)
            connection = session.connection()
            (run_id,) = add_runs(connection, study.experiment_id, [(values, params, tags)])
            queued = values["status"] == RunStatus.QUEUED
            history.append(Told(created, dict(point), "RUNNING" if queued else "FAIL"))
            created += 1
            if queued:
                in_flight += 1
                added.append(Dispatch(run_id, study.queue, study.priority))
    if study.state == StudyState.ACTIVE and created >= study.trials and in_flight == 0:
        study.state = StudyState.DONE
        study.finished_at = utcnow()
    session.flush()
    return added


def top_up_active(session: Session) -> list[Dispatch]:
    """top_up every active study short of trials (or all ended and not yet marked done) that
    another transaction does not hold: the reaper's pass, for a study whose trials ended with
    nobody left to add the next ones (a crash, an older expq). Studies that need nothing are
    found without a lock, so a pass over a healthy fleet locks no study."""
    created = func.count(Run.run_id)
    in_flight = func.count(Run.run_id).filter(Run.status.in_(_IN_FLIGHT))
    short = select(Study.study_id).outerjoin(Run, Run.study_id == Study.study_id)
    short = (
        short.where(Study.state == StudyState.ACTIVE)
        .group_by(Study.study_id, Study.parallel, Study.trials)
        .having(
            or_(
                and_(in_flight < Study.parallel, created < Study.trials),
                and_(created >= Study.trials, in_flight == 0),
            )
        )
        .order_by(Study.study_id)
    )
    added: list[Dispatch] = []
    for study_id in session.scalars(short).all():
        added += top_up(session, study_id, skip_locked=True)
    return added
