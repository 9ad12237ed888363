"""`expq demo` as a user runs it: embedded broker, a real worker, eight runs, clean exit."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from support import free_port, poll

from service.demo import DEMO_PAIRS, demo_specs


def _processes_with_home(home: Path) -> list[int]:
    """Pids whose environment names this EXPQ_HOME: the demo and anything it started."""
    marker = f"EXPQ_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _statuses(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return [status for (status,) in connection.execute("SELECT status FROM runs")]


def _demo_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPQ_")}
    return {**env, "EXPQ_HOME": str(home)}


def test_the_demo_trains_every_pair_and_stops_its_worker(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = subprocess.run(
        [sys.executable, "-m", "service", "demo", "--epochs", "1"],
        env=_demo_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8/8 runs succeeded" in result.stdout
    assert (home / "expq.db").is_file()
    assert _processes_with_home(home) == []
    with sqlite3.connect(home / "expq.db") as connection:
        rows = connection.execute(
            "SELECT task, model, epochs_done, best_epoch, best_metric, final_metric FROM runs"
        ).fetchall()
    assert sorted((task, model) for task, model, *_ in rows) == sorted(DEMO_PAIRS)
    for _, _, epochs, best_epoch, best_metric, final_metric in rows:
        assert (epochs, best_epoch) == (1, 1) and best_metric == final_metric is not None
    _the_printed_command_opens_the_runs(result.stdout, home)


def _the_printed_command_opens_the_runs(stdout: str, home: Path) -> None:
    """The results end with one command; run as printed, it serves the demo's experiment.
    (Only the worker's shutdown line comes after it.)"""
    prefix = "open them in the dashboard: "
    lines = stdout.strip().splitlines()
    last = lines[lines.index("8/8 runs succeeded") + 1]
    assert last.startswith(prefix + "expq ui --experiment demo-"), last
    assert lines[-1] == "stopping the demo worker ..."
    command = [*last.removeprefix(prefix).split()[1:], "--port", str(free_port())]
    ui = subprocess.Popen(
        [sys.executable, "-m", "service", *command],
        env=_demo_env(home),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        address = ui.stderr.readline().split()[2]  # "expq ui: ADDRESS over DATABASE"
        page = poll(lambda: _get(address), 30, f"the dashboard at {address}")
        data = json.loads(page.split('id="page-data">')[1].split("</script>")[0])
        assert data["name"] == command[2]
        assert len(data["runs"]) == 8 and {run["status"] for run in data["runs"]} == {"succeeded"}
    finally:
        ui.terminate()
        ui.wait(10)


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.read().decode()
    except OSError:
        return None


@pytest.mark.parametrize("task", ["binary", "sentiment"])
def test_the_demo_settings_teach_the_rnn(task: str) -> None:
    """What the demo submits for the RNN of binary and sentiment reaches >= 0.95 val accuracy
    at its best epoch: the first screen shows networks that learned."""
    import torch

    from models.spec import spec_from_dict
    from models.training import fit

    [raw] = [raw for raw in demo_specs() if (raw["task"], raw["model"]) == (task, "rnn")]
    assert set(raw) == {"task", "model", "device"}  # the task's defaults, as submit gives them
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the demo's worker runs it (OMP_NUM_THREADS=1)
    reports: list = []
    try:
        result = fit(spec_from_dict(raw), on_epoch=reports.append)
    finally:
        torch.set_num_threads(threads)
    assert result.status == "completed"
    best = min(reports, key=lambda report: report.val.total)
    assert best.val.metric >= 0.95, [round(r.val.metric, 3) for r in reports]


def test_ctrl_c_stops_every_process_the_demo_started(tmp_path: Path) -> None:
    home = tmp_path / "home"
    demo = subprocess.Popen(
        [sys.executable, "-m", "service", "demo", "--epochs", "50"],
        env=_demo_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    poll(lambda: len(_processes_with_home(home)) >= 2, 60, "the demo's worker to start")
    poll(lambda: "training" in (demo.stdout.readline() or ""), 60, "the runs to be submitted")
    demo.send_signal(signal.SIGINT)
    # Alone it exits in seconds; on a loaded 2-core CI machine its cancels took over a minute
    # (an open defect: see the stop's note).
    demo.wait(180)
    assert demo.returncode == 130
    assert "cancelled" in demo.stdout.read()
    poll(lambda: _processes_with_home(home) == [], 30, "every demo process to exit")
    statuses = _statuses(home / "expq.db")
    assert len(statuses) == 8
    assert "queued" not in statuses and "running" not in statuses, statuses
    assert "cancelled" in statuses
