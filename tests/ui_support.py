"""What the dashboard's tests share: a store with a small sweep in it, real `expq ui` processes,
HTTP with the standard library."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from support import Split, free_port, poll

SWEEP = [  # (model, lr, hidden, seed)
    ("rnn", 0.01, 16, 1),
    ("rnn", 0.01, 16, 2),
    ("rnn", 0.1, 32, 1),
    ("rnn", 0.1, 32, 2),
    ("mlp", 0.3, 16, 1),
    ("mlp", 0.3, 64, 2),
]
EPOCHS = 6
TIMESTEPS = 3


@dataclass
class Answer:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Answer:
    """One HTTP request with the standard library; an error status is an answer too."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers, error.read())


def step_losses(lr: float, epoch: int) -> list[float]:
    """L_t of a made-up run: falling with the epoch, rising with t, scaled by lr."""
    return [round((1 + lr * 10) / epoch + 0.1 * t, 6) for t in range(1, TIMESTEPS + 1)]


def record(engine, run_id: int, attempt: int, epoch: int, lr: float) -> None:  # noqa: ANN001
    from service.lifecycle import record_epoch

    train = step_losses(lr, epoch)
    val = [value * 1.5 for value in train]
    record_epoch(
        engine,
        run_id,
        attempt,
        epoch,
        {"train": Split(sum(train), train, 0.5 + lr), "val": Split(sum(val), val, 0.4 + lr)},
    )


def make_run(engine, experiment: str, **fields: Any) -> int:  # noqa: ANN001
    from models.spec import spec_from_dict
    from service.store import NewRun, create_run

    spec = spec_from_dict({"task": "translation", "model": "rnn", "epochs": EPOCHS, **fields})
    new = NewRun(experiment=experiment, queue="cpu", tags={"team": "ab"[fields["seed"] % 2]})
    return create_run(engine, spec.to_dict(), spec.params(), new).id


def fill_sweep(engine) -> dict[str, Any]:  # noqa: ANN001
    """Experiment "sweep": six finished runs; beside it one running run and one queued."""
    from service.lifecycle import claim_run, finish_run

    finished = []
    for model, lr, hidden, seed in SWEEP:
        run_id = make_run(engine, "sweep", model=model, lr=lr, hidden=hidden, seed=seed)
        attempt = claim_run(engine, run_id, owner="o", worker="w", device="cpu", lease_seconds=600)
        for epoch in range(1, EPOCHS + 1):
            record(engine, run_id, attempt, epoch, lr)
        finish_run(engine, run_id, attempt, "succeeded")
        finished.append(run_id)
    running = make_run(engine, "live", lr=0.2, hidden=16, seed=3)
    attempt = claim_run(engine, running, owner="o", worker="w", device="cpu", lease_seconds=600)
    record(engine, running, attempt, 1, 0.2)
    queued = make_run(engine, "live", lr=0.5, hidden=16, seed=4)
    return {"finished": finished, "running": running, "attempt": attempt, "queued": queued}


class UiServer:
    """A real `expq ui` process on a free loopback port."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "ui", "--port", str(self.port), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        poll(self._up, 30, f"expq ui on port {self.port}", interval=0.2)

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"expq ui exited: {self.process.communicate()[1]}")
        try:
            fetch(f"{self.url}/static/dashboard.css")
        except OSError:
            return False
        return True

    def get(self, path: str, **options: Any) -> Answer:
        return fetch(self.url + path, **options)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
