"""A fused group trains each member exactly as alone: bit-for-bit equal per-epoch reports."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
import torch

from models.data import build_data
from models.fusion import Member, fit_group, fusion_key
from models.spec import TrainSpec
from models.training import EpochReport, FitResult, fit


def _solo(spec: TrainSpec, **kwargs: object) -> tuple[FitResult, list[EpochReport]]:
    reports: list[EpochReport] = []
    result = fit(spec, build_data(spec), on_epoch=reports.append, **kwargs)
    return result, reports


def _numbers(reports: list[EpochReport]) -> list[tuple]:
    """Every loss and metric of every epoch: what must equal the solo run's."""
    return [(r.epoch, r.train, r.val) for r in reports]


def _member(spec: TrainSpec, **kwargs: object) -> tuple[Member, list[EpochReport]]:
    reports: list[EpochReport] = []
    return Member(spec, on_epoch=reports.append, **kwargs), reports


def _variants(base: TrainSpec) -> list[TrainSpec]:
    """Members that share the base's data and shapes and differ in everything else."""
    return [
        base,
        replace(base, lr=0.3, momentum=0.0, weight_decay=0.01, dropout=0.3, seed=7, grad_clip=0.5),
        replace(base, lr=0.05, momentum=0.5, dropout=0.1, seed=11, grad_clip=0.0, epochs=3),
    ]


@pytest.mark.parametrize(
    ("task", "model", "cell", "layers"),
    [
        ("binary", "mlp", "gru", 2),
        ("sentiment", "mlp", "gru", 1),
        ("captioning", "mlp", "gru", 1),
        ("translation", "mlp", "gru", 2),
        ("binary", "rnn", "lstm", 1),
        ("sentiment", "rnn", "gru", 2),
        ("sentiment", "rnn", "rnn", 1),
        ("captioning", "rnn", "lstm", 2),
        ("translation", "rnn", "rnn", 2),
        ("translation", "rnn", "gru", 1),
    ],
)
def test_each_member_equals_its_solo_run(
    tiny_spec, task: str, model: str, cell: str, layers: int
) -> None:
    base = tiny_spec(task, model, cell=cell, layers=layers, data_seed=5, seed=1, samples=40)
    specs = _variants(base)
    assert len({fusion_key(spec) for spec in specs}) == 1
    members = [_member(spec) for spec in specs]
    results = fit_group([m for m, _ in members], build_data(base), "cpu")
    for spec, (_, reports), grouped in zip(specs, members, results, strict=True):
        solo, solo_reports = _solo(spec)
        assert grouped.error is None
        assert grouped.result == solo
        assert _numbers(reports) == _numbers(solo_reports)
        assert len(reports) == spec.epochs


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("task", "batch_size"), [("captioning", 7), ("binary", 10)])
def test_batches_of_few_rows_equal_their_solo_runs(
    tiny_spec, threads: int, task: str, batch_size: int
) -> None:
    """MKL rounds a matmul of few rows by the thread count and by where the matrix starts in
    memory: a stacked MLP must round those batches (all of them here, or the last) as alone."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        base = tiny_spec(task, "mlp", hidden=64, batch_size=batch_size, data_seed=1, layers=2)
        specs = _variants(base)
        members = [_member(spec) for spec in specs]
        fit_group([m for m, _ in members], build_data(base), "cpu")
        for spec, (_, reports) in zip(specs, members, strict=True):
            assert _numbers(reports) == _numbers(_solo(spec)[1])
    finally:
        torch.set_num_threads(before)


def test_a_diverging_member_leaves_the_others_identical(tiny_spec) -> None:
    base = tiny_spec("binary", "mlp", activation="relu", data_seed=3, epochs=3)
    blowing_up = replace(base, lr=1e30, momentum=0.9, seed=4, grad_clip=0.0)
    steady = replace(base, seed=5)
    (bad, _), (good, reports) = _member(blowing_up), _member(steady)
    results = fit_group([bad, good], build_data(base), "cpu")
    assert results[0].result is not None and results[0].result.status == "diverged"
    solo, solo_reports = _solo(steady)
    assert results[1].result == solo and solo.status == "completed"
    assert _numbers(reports) == _numbers(solo_reports)


def test_each_member_leaves_on_its_own_fate(tiny_spec) -> None:
    """Stopped, failing callback, fewer epochs, early stopping: each leaves when it would
    alone, and the member that stays trains as alone throughout."""
    base = tiny_spec("binary", "mlp", data_seed=2, epochs=4)
    stop = threading.Event()

    def stop_after_first(report: EpochReport) -> None:
        stop.set()

    def fail_at_second(report: EpochReport) -> None:
        if report.epoch == 2:
            raise LookupError("lease lost")

    early = replace(base, lr=5.0, momentum=0.9, patience=1, seed=9)
    members = [
        Member(replace(base, seed=1), on_epoch=stop_after_first, stop=stop),
        Member(replace(base, seed=2), on_epoch=fail_at_second),
        Member(replace(base, seed=3, epochs=1)),
        Member(early),
        _member(replace(base, seed=4))[0],
    ]
    stayer_reports: list[EpochReport] = []
    members[4].on_epoch = stayer_reports.append
    results = fit_group(members, build_data(base), "cpu")
    assert results[0].result == FitResult("stopped", 1, "cpu", "stop requested during epoch 2")
    assert results[1].result is None and isinstance(results[1].error, LookupError)
    assert results[2].result == FitResult("completed", 1, "cpu", None)
    early_solo, _ = _solo(early)
    assert early_solo.status == "early_stopped" and early_solo.epochs_done < base.epochs
    assert results[3].result == early_solo
    solo, solo_reports = _solo(members[4].spec)
    assert results[4].result == solo
    assert _numbers(stayer_reports) == _numbers(solo_reports)


def test_batch_ticks_come_from_each_members_own_batches(tiny_spec) -> None:
    base = tiny_spec("binary", "mlp", data_seed=2, epochs=2)
    ticks = [0, 0]

    def tick(i: int) -> object:
        return lambda: ticks.__setitem__(i, ticks[i] + 1)

    members = [Member(base, on_batch=tick(0)), Member(replace(base, epochs=1), on_batch=tick(1))]
    fit_group(members, build_data(base), "cpu")
    per_epoch = -(-len(build_data(base).train) // base.batch_size)
    assert ticks == [2 * per_epoch, per_epoch]


@pytest.mark.parametrize("model", ["mlp", "rnn"])
def test_a_member_is_told_it_left_while_the_others_train_on(tiny_spec, model: str) -> None:
    """on_end comes as the member leaves, not when the group ends: a worker records a run's
    end then."""
    base = tiny_spec("binary", model, data_seed=4, epochs=3)
    events: list[tuple] = []

    def member(name: str, spec: TrainSpec) -> Member:
        return Member(
            spec,
            on_epoch=lambda report: events.append((name, report.epoch)),
            on_end=lambda ended: events.append((name, ended.result.status)),
        )

    fit_group(
        [member("long", base), member("short", replace(base, epochs=1))], build_data(base), "cpu"
    )
    assert events.index(("short", "completed")) < events.index(("long", 2))
    assert events[-1] == ("long", "completed")


@pytest.mark.parametrize(
    ("task", "model", "cell"), [("translation", "rnn", "lstm"), ("captioning", "mlp", "gru")]
)
def test_an_admitted_member_trains_exactly_as_alone(
    tiny_spec, task: str, model: str, cell: str
) -> None:
    base = tiny_spec(task, model, cell=cell, layers=2, dropout=0.2, data_seed=6, samples=30)
    late, late_reports = _member(replace(base, seed=21, lr=0.2, weight_decay=0.01, epochs=2))
    offers = [[], [late]]
    first = Member(replace(base, epochs=3))
    admit = lambda: offers.pop(0) if offers else []  # noqa: E731
    results = fit_group([first], build_data(base), "cpu", admit=admit)
    assert not offers
    solo, solo_reports = _solo(late.spec)
    assert results[1].result == solo
    assert _numbers(late_reports) == _numbers(solo_reports)
    assert results[0].result == _solo(first.spec)[0]


@pytest.mark.parametrize(
    ("task", "model", "cell"), [("captioning", "rnn", "gru"), ("sentiment", "mlp", "gru")]
)
def test_a_member_resumes_from_its_checkpoint_in_another_group(
    tiny_spec, task: str, model: str, cell: str
) -> None:
    base = tiny_spec(task, model, cell=cell, layers=2, dropout=0.2, data_seed=8, samples=30)
    spec = replace(base, epochs=4, momentum=0.9, seed=3)
    stop = threading.Event()
    kept: list[EpochReport] = []

    def keep(report: EpochReport) -> None:
        kept.append(report)
        if report.epoch == 2:
            stop.set()

    data = build_data(base)
    first = fit_group([Member(spec, on_epoch=keep, stop=stop), Member(base)], data, "cpu", True)
    assert first[0].result is not None and first[0].result.status == "stopped"
    state = kept[-1].checkpoint
    assert state is not None and state.epoch == 2
    resumed, resumed_reports = _member(spec, resume=state)
    second = fit_group([Member(replace(base, seed=30)), resumed], data, "cpu", True)
    solo_reports: list[EpochReport] = []
    solo = fit(spec, data, on_epoch=solo_reports.append, checkpoints=True)
    assert second[1].result == solo
    assert _numbers(kept + resumed_reports) == _numbers(solo_reports)
    for grouped, alone in zip(kept + resumed_reports, solo_reports, strict=True):
        assert grouped.checkpoint is not None and alone.checkpoint is not None
        for name, weights in alone.checkpoint.model.items():
            assert torch.equal(grouped.checkpoint.model[name], weights), name
        assert torch.equal(grouped.checkpoint.rng, alone.checkpoint.rng)


@pytest.mark.parametrize("model", ["mlp", "rnn"])
def test_a_training_fault_ends_the_whole_group(tiny_spec, model: str) -> None:
    """A checkpoint of another shape fails training itself, not a member's callback."""
    base = tiny_spec("binary", model, data_seed=2, epochs=1)
    reports: list[EpochReport] = []
    fit(replace(base, hidden=4), build_data(base), on_epoch=reports.append, checkpoints=True)
    wrong = Member(replace(base, seed=3), resume=reports[0].checkpoint)
    with pytest.raises(RuntimeError, match="size mismatch"):
        fit_group([Member(base), wrong], build_data(base), "cpu")


def test_fusion_key_ignores_what_each_member_keeps() -> None:
    from models.spec import spec_from_dict

    base = spec_from_dict({"task": "sentiment", "model": "rnn", "seed": 1, "data_seed": 1})
    own = replace(
        base,
        lr=0.5,
        momentum=0.2,
        weight_decay=0.1,
        dropout=0.4,
        grad_clip=0.0,
        seed=9,
        epochs=99,
        patience=3,
        time_limit=5.0,
        prune="median",
        prune_warmup=4,
    )
    assert fusion_key(own) == fusion_key(base)
    for shape in (
        {"hidden": 8},
        {"cell": "lstm"},
        {"layers": 2},
        {"batch_size": 7},
        {"data_seed": 2},
        {"samples": 99},
        {"seq_len": 9},
        {"device": "cuda"},
    ):
        assert fusion_key(replace(base, **shape)) != fusion_key(base), shape
    assert fusion_key(replace(base, data_seed=None)) == fusion_key(base)  # seed 1 draws it


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("task", "model"), [("binary", "mlp"), ("translation", "rnn")])
def test_on_cuda_each_member_follows_its_solo_run(tiny_spec, task: str, model: str) -> None:
    """On CUDA the group trains in lockstep with each member's own CUDA generator state, on
    the kernels (and CUDA graphs) of its solo run."""
    base = tiny_spec(task, model, device="cuda", layers=2, data_seed=5, samples=40)
    specs = _variants(base)
    members = [_member(spec) for spec in specs]
    fit_group([m for m, _ in members], build_data(base), "cuda")
    for spec, (_, reports) in zip(specs, members, strict=True):
        _, solo_reports = _solo(spec)
        assert len(reports) == len(solo_reports) == spec.epochs
        for grouped, alone in zip(reports, solo_reports, strict=True):
            assert grouped.train.total == pytest.approx(alone.train.total, rel=1e-6)
            assert grouped.val.per_timestep == pytest.approx(alone.val.per_timestep, rel=1e-6)
