"""`expq ui`: serve the dashboard. Imports the web stack only when the command runs."""

from __future__ import annotations

import os
import socket
from urllib.parse import quote

import click

from service.config import load_settings, mask_url
from service.errors import ExpqError
from service.ui.access import check_exposure

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


@click.command()
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    help="Address to listen on (loopback: no token).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--token",
    envvar="EXPQ_UI_TOKEN",
    help="Secret every request must carry (Bearer header or ?token=); required off loopback. "
    "Env: EXPQ_UI_TOKEN.",
)
@click.option("--experiment", help="Print the address of this experiment's page at start.")
def ui(host: str, port: int, token: str | None, experiment: str | None) -> None:
    """Serve a read-only web dashboard over the configured database."""
    check_exposure(host, token)
    import uvicorn

    from service.db import get_engine
    from service.ui.app import make_app

    settings = load_settings()
    engine = get_engine(settings.database_url, create=False)
    app = make_app(engine, token, settings.broker_url)
    listening = _listen(host, port)
    bare = host.strip("[]")
    shown = f"[{bare}]" if ":" in bare else bare
    address = f"http://{shown}:{port}/"
    if experiment:
        address += f"experiments/{quote(experiment, safe='')}"
    click.echo(f"expq ui: {address} over {mask_url(settings.database_url)}", err=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[listening])


def _listen(host: str, port: int) -> socket.socket:
    """The bound socket; a port in use is one line and exit 1, not uvicorn's log and exit 3."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host.strip("[]"), port), family=family)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ExpqError(f"cannot listen on {host}:{port}: {reason}") from None
