"""`expq sweep --search ...`, `expq sweep status` and `expq sweep stop`: adaptive search."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from service.commands.common import open_engine
from service.config import load_settings
from service.output import print_json, print_table

WAIT_INTERVAL_SECONDS = 1.0


def queue_study(
    raw: dict[str, str],
    ranges: list,
    options: Any,
    *,
    experiment: str,
    data: Path | None,
    val_data: Path | None,
    priority: int,
    tags: dict[str, str],
    dry_run: bool,
    as_json: bool,
    wait: bool,
) -> None:
    """Plan the study, store it with its first trials, publish them; with `wait`, follow it to
    its end and print its status."""
    from service.commands.sweep import check_broker
    from service.store import get_runs, save_dataset
    from service.study import create_study
    from service.study_plan import plan_study
    from workers.app import make_app
    from workers.dispatch import publish_run, queue_for_device

    settings = load_settings()
    plan, files = plan_study(
        raw,
        ranges,
        options,
        experiment=experiment,
        data=data,
        val_data=val_data,
        queue_for=queue_for_device,
        priority=priority,
        max_attempts=settings.max_attempts,
        tags=tags,
    )
    summary = (
        f"a {plan.search} study of {plan.trials} trials, {plan.parallel} in flight, "
        f"{plan.objective.direction[:3]} {plan.objective.name}"
    )
    if dry_run:
        shown = {"search": plan.search, "objective": plan.objective.name}
        shown |= {"direction": plan.objective.direction, "trials": plan.trials}
        shown |= {"parallel": plan.parallel, "space": plan.space.to_json()}
        if as_json:
            print_json(shown)
        else:
            click.echo(f"dry run: {summary} over {', '.join(plan.space.names)}")
        return
    app = make_app(settings.broker_url)
    engine = open_engine(create=True)
    check_broker(app)
    for digest, content in files.items():
        save_dataset(engine, digest, content)
    _, added = create_study(engine, plan)
    # Committed: from here a lost message is the reaper's to send again, never a lost trial.
    for dispatch in added:
        publish_run(app, dispatch.run_id, dispatch.queue, dispatch.priority)
    runs = get_runs(engine, [d.run_id for d in added])
    if as_json and not wait:
        print_json([run.to_json() for run in runs])
    elif not wait:
        click.echo(" ".join(str(run.id) for run in runs))
    click.echo(f"{summary} in experiment {experiment}: trials 0-{len(added) - 1} queued", err=True)
    if wait:
        _print_status(_wait_until_ended(engine, experiment), "json" if as_json else "table")


def _wait_until_ended(engine: Any, experiment: str) -> dict[str, Any]:
    from service.study import study_status

    while True:
        status = study_status(engine, experiment)
        counts = status["counts"]
        if status["state"] != "active" and counts["queued"] + counts["running"] == 0:
            return status
        time.sleep(WAIT_INTERVAL_SECONDS)


def _print_status(status: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        print_json(status)
        return
    counts = status["counts"]
    rows = [
        ["experiment", status["experiment"]],
        ["search", f"{status['search']} ({status['state']})"],
        ["objective", f"{status['objective']} ({status['direction']})"],
        ["trials", f"{sum(counts.values())} of {status['trials']}, {status['parallel']} at once"],
        ["pruner", status["pruner"] or "-"],
        *([key, counts[key]] for key in counts),
    ]
    best = status["best"]
    if best is None:
        rows.append(["best", "-"])
    else:
        rows.append(["best", f"run {best['id']} (trial {best['trial']}): {best['value']:.6g}"])
        rows += [[f"  {name}", value] for name, value in best["params"].items()]
    print_table(f"study of experiment {status['experiment']}", ["", "value"], rows)


@click.command()
@click.argument("experiment")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
def status(experiment: str, fmt: str) -> None:
    """Show a study: its sampler, trials by outcome, and the best trial so far."""
    from service.study import study_status

    _print_status(study_status(open_engine(), experiment), fmt)


@click.command()
@click.argument("experiment")
def stop(experiment: str) -> None:
    """Stop a study: no more trials are added, queued ones are cancelled, running ones finish."""
    from service.study import stop_study

    cancelled = stop_study(open_engine(), experiment)
    click.echo(
        f"study of experiment {experiment} stopped; {len(cancelled)} queued trials cancelled"
    )
