from __future__ import annotations

import math
import threading

import pytest
import torch

from models.data import build_data
from models.networks import build_model
from models.registry import TASKS
from models.spec import MODELS
from models.training import (
    DeviceError,
    EpochReport,
    build_optimizer,
    fit,
    fit_model,
    resolve_device,
)


def run(spec, **kwargs) -> tuple[object, list[EpochReport]]:
    reports: list[EpochReport] = []
    result = fit(spec, on_epoch=reports.append, **kwargs)
    return result, reports


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("model", MODELS)
def test_short_run_reports_every_epoch(tiny_spec, task: str, model: str) -> None:
    spec = tiny_spec(task, model, loss="mse" if model == "mlp" else "cross_entropy")
    data = build_data(spec)
    reports: list[EpochReport] = []
    result = fit(spec, data, on_epoch=reports.append)
    assert (result.status, result.epochs_done, result.device, result.reason) == (
        "completed",
        2,
        "cpu",
        None,
    )
    assert [r.epoch for r in reports] == [1, 2]
    for report in reports:
        assert report.seconds > 0
        assert len(report.train.per_timestep) == data.train.steps
        assert len(report.val.per_timestep) == data.val.steps
        for split in (report.train, report.val):
            assert math.isfinite(split.total) and 0 <= split.metric <= 1
            primary = "accuracy" if data.dims.output_len == 1 else "token_accuracy"
            assert split.metric == split.metrics[primary]
            assert set(split.metrics) <= {primary, "exact_match"}


# (epochs, lr) that drive each tiny training set near zero loss in well under a second
OVERFIT = {
    "binary": (60, 0.5),
    "sentiment": (80, 0.5),
    "captioning": (80, 0.5),
    "translation": (80, 0.5),
}


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("model", MODELS)
def test_overfits_a_tiny_batch(tiny_spec, task: str, model: str) -> None:
    epochs, lr = OVERFIT[task]
    spec = tiny_spec(task, model, samples=20, batch_size=16, hidden=32, epochs=epochs, lr=lr)
    result, reports = run(spec)
    assert result.status == "completed"
    first, last = reports[0].train.total, reports[-1].train.total
    assert last < 0.05 * first and last < 0.2, (first, last)


def test_bit_identical_losses_for_same_seed(tiny_spec) -> None:
    spec = tiny_spec("translation", "rnn", dropout=0.2, epochs=3)
    _, first = run(spec)
    _, second = run(spec)
    assert [(r.train, r.val) for r in first] == [(r.train, r.val) for r in second]
    _, other = run(tiny_spec("translation", "rnn", dropout=0.2, epochs=3, seed=1))
    assert first[0].train.total != other[0].train.total


def test_one_device_to_host_transfer_per_epoch(tiny_spec, monkeypatch) -> None:
    spec = tiny_spec("captioning", "rnn", epochs=3)
    data = build_data(spec)
    model = build_model(spec, data.dims)
    calls = {"tolist": 0, "other": 0}
    tolist = torch.Tensor.tolist

    def counted(self):
        calls["tolist"] += 1
        return tolist(self)

    def forbidden(name):
        def sync(self, *args):
            calls["other"] += 1
            raise AssertionError(f"Tensor.{name} reads a value back")

        return sync

    monkeypatch.setattr(torch.Tensor, "tolist", counted)
    for name in ("item", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden(name))
    result = fit_model(spec, data, model, build_optimizer(spec, model), "cpu")
    assert result.status == "completed"
    assert calls == {"tolist": 3, "other": 0}


def test_stop_before_training_and_between_epochs(tiny_spec) -> None:
    stop = threading.Event()
    stop.set()
    result, reports = run(tiny_spec("binary", "mlp"), stop=stop)
    assert (result.status, result.epochs_done, reports) == ("stopped", 0, [])

    stop = threading.Event()
    reports = []

    def after_first(report: EpochReport) -> None:
        reports.append(report)
        stop.set()

    result = fit(tiny_spec("binary", "mlp", epochs=5), on_epoch=after_first, stop=stop)
    assert (result.status, result.epochs_done, len(reports)) == ("stopped", 1, 1)


def test_stop_ends_training_after_the_current_batch(tiny_spec) -> None:
    spec = tiny_spec("sentiment", "rnn", samples=200, batch_size=10)
    data = build_data(spec)
    model = build_model(spec, data.dims)
    stop = threading.Event()
    batches = []

    def count(module, args, output) -> None:
        if module.training:
            batches.append(1)
            if len(batches) == 3:
                stop.set()

    model.register_forward_hook(count)
    result = fit_model(spec, data, model, build_optimizer(spec, model), "cpu", stop=stop)
    assert (result.status, result.epochs_done, len(batches)) == ("stopped", 0, 3)


def test_max_steps_caps_optimizer_steps(tiny_spec) -> None:
    spec = tiny_spec("translation", "mlp", samples=100, batch_size=8, epochs=5)
    data = build_data(spec)
    model = build_model(spec, data.dims)
    optimizer = build_optimizer(spec, model)
    steps = []
    optimizer.register_step_post_hook(lambda *_: steps.append(1))
    reports = []
    result = fit_model(spec, data, model, optimizer, "cpu", reports.append, max_steps=3)
    assert (result.status, result.epochs_done, len(steps), len(reports)) == (
        "completed",
        1,
        3,
        1,
    )
    assert result.reason == "max_steps=3 reached"
    assert math.isfinite(reports[0].train.total)


def test_non_finite_loss_reports_the_epoch_then_diverges(tiny_spec) -> None:
    spec = tiny_spec("binary", "mlp", epochs=4)
    data = build_data(spec)
    model = build_model(spec, data.dims)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    reports = []
    result = fit_model(spec, data, model, build_optimizer(spec, model), "cpu", reports.append)
    assert (result.status, result.epochs_done) == ("diverged", 1)
    assert result.reason == "non-finite train loss at epoch 1"
    assert len(reports) == 1 and math.isnan(reports[0].train.total)


def test_callback_errors_propagate(tiny_spec) -> None:
    def fail(report: EpochReport) -> None:
        raise RuntimeError("store unavailable")

    with pytest.raises(RuntimeError, match="store unavailable"):
        fit(tiny_spec("binary", "mlp"), on_epoch=fail)


def test_early_stopping_on_val_loss(tiny_spec) -> None:
    spec = tiny_spec("captioning", "mlp", samples=30, epochs=200, lr=0.5, patience=3)
    result, reports = run(spec)
    assert result.status == "early_stopped" and result.epochs_done < 200
    assert result.reason == "val loss did not improve for 3 epochs"
    totals = [r.val.total for r in reports]
    assert min(totals[-3:]) >= min(totals[:-3])


def test_cuda_missing_fails_fast(tiny_spec, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(DeviceError, match="CUDA requested but not available"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="CUDA requested but not available"):
        fit(tiny_spec("binary", "mlp", device="cuda"))


@pytest.mark.parametrize(("task", "model"), [("captioning", "rnn"), ("translation", "mlp")])
def test_token_accuracy_at_each_output_step(tiny_spec, task: str, model: str) -> None:
    """The val report's per-step token accuracy is what greedy decoding of the epoch's weights
    scores at each step, over the sequences that have a target there."""
    spec = tiny_spec(task, model, epochs=2)
    data = build_data(spec)
    reports: list[EpochReport] = []
    fit(spec, data, on_epoch=reports.append, checkpoints=True)
    net = build_model(spec, data.dims)
    net.load_state_dict(reports[-1].checkpoint.model)
    net.eval()
    val = data.val
    with torch.no_grad():
        guess = net.decode(val.x, val.lengths)[:, : val.y.shape[1]]  # (sequences, steps)
    mask = torch.arange(val.y.shape[1]) < val.y_len[:, None]
    correct = ((guess == val.y) & mask).sum(0)
    expected = (correct.double() / mask.sum(0).double())[: val.steps].tolist()
    report = reports[-1].val
    assert report.per_timestep_metrics.keys() == {"token_accuracy"}
    steps = report.per_timestep_metrics["token_accuracy"]
    assert len(steps) == len(report.per_timestep) == val.steps
    assert steps == pytest.approx(expected, abs=1e-12)
    assert len(set(steps)) > 1  # the steps differ, so a whole-split value would not pass
    train = reports[-1].train.per_timestep_metrics["token_accuracy"]
    assert len(train) == len(reports[-1].train.per_timestep)


def test_label_tasks_have_no_per_step_metric(tiny_spec) -> None:
    _, reports = run(tiny_spec("sentiment", "rnn"))
    assert all(r.val.per_timestep_metrics == {} == r.train.per_timestep_metrics for r in reports)
    assert all(set(r.val.metrics) == {"accuracy"} for r in reports)
