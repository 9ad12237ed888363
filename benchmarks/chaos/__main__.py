"""`python -m benchmarks.chaos --runs N --seed S [--broker redis|rabbitmq] [--replay FILE]`:
a seeded fault campaign against a private fleet; exit 0 when the checker finds no violation,
1 when it does, 2 for bad usage."""

from __future__ import annotations

import signal
import sys
import tempfile
from pathlib import Path

import click

from benchmarks.chaos.network import unavailable_reason
from benchmarks.chaos.plan import Plan, draw


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--runs", type=click.IntRange(1, 10_000), default=30, help="Runs to submit.")
@click.option("--seed", type=int, default=0, help="Seed of the workload and fault schedule.")
@click.option(
    "--broker", type=click.Choice(["redis", "rabbitmq"]), default="redis", help="The broker."
)
@click.option(
    "--replay",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Run the plan saved in this file (a campaign's plan.json) instead of drawing one.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for plan.json, history.jsonl, final.json and report.md (default: a new one).",
)
def main(runs: int, seed: int, broker: str, replay: Path | None, out: Path | None) -> None:
    """Run a seeded fault campaign and check its history."""
    from benchmarks.chaos.campaign import run_campaign

    # SIGTERM unwinds like Ctrl-C, so the fleet, its services and namespaces are torn down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reason = unavailable_reason()
    if reason:
        click.echo(f"chaos: network faults skipped: {reason}", err=True)
    if replay is not None:
        plan = Plan.load(replay)
        if plan.network and reason:
            raise click.UsageError(f"{replay} has network faults, and {reason}")
    else:
        plan = draw(seed, runs, broker, network=reason is None)
    out = out or Path(tempfile.mkdtemp(prefix=f"expq-chaos-{plan.seed}-"))
    out.mkdir(parents=True, exist_ok=True)
    plan.save(out / "plan.json")  # before anything starts: a crash leaves it to replay
    click.echo(f"chaos: plan in {out / 'plan.json'}", err=True)
    outcome = run_campaign(plan, out, lambda line: click.echo(f"chaos: {line}", err=True))
    click.echo(outcome.report)
    click.echo(f"chaos: {outcome.seconds:.0f} s; history in {out}", err=True)
    sys.exit(0 if outcome.verdict.valid else 1)


if __name__ == "__main__":
    main()
