"""The `expq` command line. Submitting and querying never import torch."""

from __future__ import annotations

import sys

import click
from sqlalchemy.exc import OperationalError

from service import __version__
from service.commands.admin import db, demo, worker, workers
from service.commands.export import export
from service.commands.model import export_model, predict
from service.commands.runs import runs
from service.commands.submit import submit
from service.commands.sweep import sweep
from service.commands.watch import watch
from service.errors import ExpqError
from service.ui.command import ui


class ExpqGroup(click.Group):
    """Prints every error as one line on stderr and exits with its documented code."""

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
        except OperationalError as exc:
            # The database went away after the first connection.
            lines = str(exc.orig or exc).strip().splitlines()
            click.echo(f"Error: database error: {lines[0] if lines else exc}", err=True)
            sys.exit(1)
        except OSError as exc:
            # A file or folder expq was told to use (EXPQ_HOME, an output path) is not usable.
            where = f": {exc.filename}" if exc.filename else ""
            click.echo(f"Error: {exc.strerror or exc}{where}", err=True)
            sys.exit(1)
        except (click.Abort, KeyboardInterrupt):
            click.echo("Aborted.", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=ExpqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="expq")
def cli() -> None:
    """expq: train MLPs and RNNs on sequence tasks across a Celery worker fleet."""


for command in (submit, sweep, watch, worker, workers, runs, db, demo, export, predict, ui):
    cli.add_command(command)
runs.add_command(export_model)


def main() -> None:
    cli(prog_name="expq")
