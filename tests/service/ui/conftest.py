"""The dashboard's fixture: real `expq ui` processes, stopped after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import expq_env
from ui_support import UiServer


@pytest.fixture
def ui_server(tmp_path: Path) -> Iterator[Callable[..., UiServer]]:
    """`start(database_url, *args, broker_url=..., **env)`: a running `expq ui`, stopped after."""
    started: list[UiServer] = []

    def start(
        database_url: str, *args: str, broker_url: str = "redis://127.0.0.1:1/0", **env: str
    ) -> UiServer:
        server = UiServer(expq_env(tmp_path, database_url, broker_url, **env), *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
