"""The `expq` command line. Submitting and querying never import torch, and each command
imports only its own module (start-up time: benchmarks/results/store_query.md)."""

from __future__ import annotations

import gc
import sys

import click

from service import __version__
from service.commands.lazy import LazyGroup
from service.errors import ExpqError

COMMANDS = {
    "db": "service.commands.admin:db",
    "demo": "service.commands.admin:demo",
    "export": "service.commands.export:export",
    "predict": "service.commands.model:predict",
    "runs": "service.commands.runs:runs",
    "submit": "service.commands.submit:submit",
    "sweep": "service.commands.sweep:sweep",
    "ui": "service.ui.command:ui",
    "watch": "service.commands.watch:watch",
    "worker": "service.commands.admin:worker",
    "workers": "service.commands.admin:workers",
}


def _database_error(exc: Exception) -> str | None:
    """The first line of a database error raised after the first connection; None for others."""
    if "sqlalchemy" not in sys.modules:
        return None
    from sqlalchemy.exc import OperationalError

    if not isinstance(exc, OperationalError):
        return None
    lines = str(exc.orig or exc).strip().splitlines()
    return lines[0] if lines else str(exc)


class ExpqGroup(LazyGroup):
    """Prints every error as one line on stderr and exits with its documented code."""

    def resolve_command(self, ctx: click.Context, args: list[str]):  # noqa: ANN201
        try:
            return super().resolve_command(ctx, args)
        finally:
            # The modules just loaded live until the process ends: frozen, the collector never
            # walks their objects again, at exit (130 ms of `expq runs list`) or in between.
            gc.freeze()
            gc.enable()  # disabled by main() while the command's modules load

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: ANN001, ANN201
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except ExpqError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:
            # A file or folder expq was told to use (EXPQ_HOME, an output path) is not usable.
            where = f": {exc.filename}" if exc.filename else ""
            click.echo(f"Error: {exc.strerror or exc}{where}", err=True)
            sys.exit(1)
        except (click.Abort, KeyboardInterrupt):
            click.echo("Aborted.", err=True)
            sys.exit(130)
        except Exception as exc:
            message = _database_error(exc)
            if message is None:
                raise
            click.echo(f"Error: database error: {message}", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=ExpqGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="expq")
def cli() -> None:
    """expq: train MLPs and RNNs on sequence tasks across a Celery worker fleet."""


def main() -> None:
    # Loading a command's modules creates some 60,000 long-lived objects (SQLAlchemy's, the
    # ORM's): the collector's repeated passes over them cost `expq runs list` about 70 ms of
    # its start (447 → 377 ms to import). It runs again once the command is found.
    gc.disable()
    try:
        cli(prog_name="expq")
    finally:
        # What the command made lives until the process exits: the collector's last pass over
        # it (seconds for the demo's, on a loaded machine) would only delay the exit.
        gc.freeze()
