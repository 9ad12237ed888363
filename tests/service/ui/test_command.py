"""`expq ui` as a user starts it: refusals, the token, a missing database, no torch."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from support import expq_env, run_cli
from ui_support import UiServer, fill_sweep


def test_another_host_without_a_token_is_refused(tmp_path: Path) -> None:
    env = expq_env(tmp_path, f"sqlite:///{tmp_path / 'expq.db'}", "redis://127.0.0.1:1/0")
    for host in ("0.0.0.0", "192.168.7.7"):
        result = run_cli(env, "ui", "--host", host, "--port", "1")
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"Error: --host {host} is not a loopback address: give --token or set "
            "EXPQ_UI_TOKEN, which every request must then carry"
        ]
    assert not (tmp_path / "expq.db").exists()


def test_a_missing_database_is_one_line_and_never_created(tmp_path: Path) -> None:
    database = tmp_path / "nothing" / "expq.db"
    env = expq_env(tmp_path, f"sqlite:///{database}", "redis://127.0.0.1:1/0")
    result = run_cli(env, "ui", "--port", "1")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"Error: no expq database at {database}")
    assert not database.parent.exists()


def test_a_port_in_use_is_one_line(tmp_path: Path, sqlite_url: str) -> None:
    from service.db import get_engine

    get_engine(sqlite_url)
    env = expq_env(tmp_path, sqlite_url, "redis://127.0.0.1:1/0")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_cli(env, "ui", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_a_token_guards_every_request(sqlite_url: str, ui_server: Callable[..., UiServer]) -> None:
    from service.db import get_engine

    fill_sweep(get_engine(sqlite_url))
    server = ui_server(sqlite_url, "--host", "127.0.0.1", EXPQ_UI_TOKEN="s3cret-token")
    for path in ("/", "/api/runs", "/runs/1", "/static/plotly.min.js", "/api/workers"):
        refused = server.get(path)
        assert refused.status == 401, path
        assert b"s3cret" not in refused.body
    assert server.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status == 401
    allowed = server.get("/api/runs", headers={"Authorization": "Bearer s3cret-token"})
    assert allowed.status == 200 and len(allowed.json()) == 8
    linked = server.get("/?token=s3cret-token")
    assert linked.status == 200
    cookie = linked.headers["set-cookie"]
    assert cookie.startswith("expq_ui_token=s3cret-token;") and "HttpOnly" in cookie
    by_cookie = server.get("/api/runs/1", headers={"Cookie": "expq_ui_token=s3cret-token"})
    assert by_cookie.status == 200 and by_cookie.json()["id"] == 1


def test_the_dashboard_never_imports_torch(tmp_path: Path, sqlite_url: str) -> None:
    from service.db import get_engine

    fill_sweep(get_engine(sqlite_url))
    env = expq_env(tmp_path, sqlite_url, "redis://127.0.0.1:1/0")
    paths = [
        "/",
        "/?where=lr%20%3C%200.2%20or%20val_loss_t%5B2%5D%20%3C%201",
        "/runs/1",
        "/compare?ids=1,2",
        "/experiments/sweep",
        "/workers",
        "/api/runs?sort=val_loss_t%5B1%5D&offset=2",
        "/api/runs/1",
        "/api/runs/1/losses",
        "/api/experiments/sweep/summary?group_by=lr,hidden",
        "/api/workers",
    ]
    probe = (
        "import sys, threading, time, urllib.request\n"
        "import uvicorn\n"
        "from service.cli import cli\n"
        "from service.config import load_settings\n"
        "from service.db import get_engine\n"
        "from service.ui.app import make_app\n"
        "settings = load_settings()\n"
        "app = make_app(get_engine(settings.database_url, create=False), None, "
        "settings.broker_url)\n"
        "server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=0, "
        "log_level='warning'))\n"
        "threading.Thread(target=server.run, daemon=True).start()\n"
        "while not server.started: time.sleep(0.05)\n"
        "port = server.servers[0].sockets[0].getsockname()[1]\n"
        f"for path in {paths!r}:\n"
        "    with urllib.request.urlopen(f'http://127.0.0.1:{port}{path}') as answer:\n"
        "        assert answer.status == 200, path\n"
        "server.should_exit = True\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'plotly' not in sys.modules, 'plotly (python) was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
