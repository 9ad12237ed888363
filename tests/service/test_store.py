"""Creating and reading runs, against SQLite and PostgreSQL (one suite over both)."""

from __future__ import annotations

import pytest
from support import claim, new_run

from models.spec import spec_from_dict
from service.errors import InputError
from service.schema import RunStatus
from service.store import (
    NewRun,
    create_run,
    delete_queued_run,
    find_idempotent_run,
    get_run,
    list_runs,
)


def test_a_new_run_is_queued_with_its_params_and_tags(engine) -> None:  # noqa: ANN001
    run = new_run(engine, lr=0.05)
    stored = get_run(engine, run.id)
    assert stored.status == RunStatus.QUEUED
    assert stored.params["lr"] == 0.05 and stored.params["task"] == "translation"
    assert stored.tags == {"team": "a"}
    assert stored.experiment == "exp"
    assert stored.to_json()["created_at"].endswith("+00:00")


def test_list_runs_filters_and_sorts(engine) -> None:  # noqa: ANN001
    first = new_run(engine, task="binary", experiment="one")
    second = new_run(engine, task="sentiment", experiment="two")
    assert [r.id for r in list_runs(engine)] == [second.id, first.id]
    assert [r.id for r in list_runs(engine, experiment="one")] == [first.id]
    assert [r.id for r in list_runs(engine, task="sentiment")] == [second.id]
    assert [r.id for r in list_runs(engine, sort="id", descending=False)] == [first.id, second.id]
    with pytest.raises(ValueError, match="cannot sort by"):
        list_runs(engine, sort="bogus")


def test_idempotency_key_returns_the_same_run_or_refuses_other_params(engine) -> None:  # noqa: ANN001
    spec = spec_from_dict({"task": "binary", "model": "mlp"})
    run = create_run(
        engine, spec.to_dict(), spec.params(), NewRun("e", "cpu", idempotency_key="k1")
    )
    assert find_idempotent_run(engine, "k1", spec.to_dict()).id == run.id
    assert find_idempotent_run(engine, "k2", spec.to_dict()) is None
    with pytest.raises(InputError, match="other parameters"):
        find_idempotent_run(engine, "k1", {**spec.to_dict(), "lr": 0.5})


def test_only_an_unclaimed_run_can_be_withdrawn(engine) -> None:  # noqa: ANN001
    withdrawn = new_run(engine)
    assert delete_queued_run(engine, withdrawn.id)
    assert get_run(engine, withdrawn.id) is None
    claimed = new_run(engine)
    claim(engine, claimed.id)
    assert not delete_queued_run(engine, claimed.id)
