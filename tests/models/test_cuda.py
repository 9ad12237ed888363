"""CUDA checks: skipped where no GPU is present (CI); run them on a GPU machine."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from models import training
from models.data import build_data
from models.graphs import GraphedSteps
from models.networks import build_model
from models.registry import TASKS
from models.spec import MODELS
from models.training import EpochReport, build_optimizer, fit, fit_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture
def no_tf32(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full float32 matrix products, so that CUDA and CPU results compare closely."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("model", MODELS)
def test_fit_on_cuda(tiny_spec, task: str, model: str) -> None:
    reports: list[EpochReport] = []
    result = fit(tiny_spec(task, model, device="auto", cell="lstm"), on_epoch=reports.append)
    assert (result.status, result.device, len(reports)) == ("completed", "cuda", 2)
    assert all(math.isfinite(r.train.total) and math.isfinite(r.val.total) for r in reports)


def count_syncs(spec) -> int:
    """Synchronizing CUDA calls that one fit_model makes, as sync debug mode reports them."""
    data = build_data(spec)
    model = build_model(spec, data.dims).cuda()
    optimizer = build_optimizer(spec, model)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fit_model(spec, data, model, optimizer, "cuda")
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("called a synchronizing CUDA operation" in str(w.message) for w in caught)


@pytest.mark.parametrize("task", ["sentiment", "translation", "captioning"])
def test_syncs_do_not_grow_with_batches(tiny_spec, task: str) -> None:
    # 320 training samples: 5 batches of 64 or 40 of 8, enough to capture a CUDA graph in both
    sizes = {"device": "cuda", "epochs": 3, "samples": 400}
    few = count_syncs(tiny_spec(task, "rnn", batch_size=64, **sizes))
    many = count_syncs(tiny_spec(task, "rnn", batch_size=8, **sizes))
    # the splits' move to the GPU, the graph's capture, then a fixed few per epoch for its
    # single read-back
    assert few == many <= 4 + 2 * 3, (few, many)


def count_host_to_device_copies(spec) -> int:
    """Host-to-device copies that one fit_model makes: each from pageable memory waits for the
    GPU's queue to drain, which sync debug mode does not report."""
    data = build_data(spec)
    model = build_model(spec, data.dims).cuda()
    optimizer = build_optimizer(spec, model)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        fit_model(spec, data, model, optimizer, "cuda")
    return sum("Memcpy HtoD" in event.name for event in profile.events())


@pytest.mark.parametrize(("task", "cell"), [("sentiment", "gru"), ("translation", "lstm")])
def test_host_to_device_copies_do_not_grow_with_batches(tiny_spec, task: str, cell: str) -> None:
    sizes = {"device": "cuda", "cell": cell, "epochs": 3, "samples": 400}
    few = count_host_to_device_copies(tiny_spec(task, "rnn", batch_size=64, **sizes))
    many = count_host_to_device_copies(tiny_spec(task, "rnn", batch_size=8, **sizes))
    assert 0 < few == many, (few, many)  # the splits' move to the GPU, one order an epoch


@pytest.mark.parametrize(("task", "cell"), [("sentiment", "gru"), ("translation", "gru"),
                                            ("translation", "lstm")])  # fmt: skip
def test_cuda_encoder_matches_the_cpu_one(mixed_batch, no_tf32, task: str, cell: str) -> None:
    """Over the padding (one GRU layer) or packed in an order sorted on the GPU (LSTM), the
    CUDA encoder summarises a batch of mixed lengths as the packed CPU encoder does."""
    net, x, lengths = mixed_batch(task, cell)
    with torch.no_grad():
        cpu_top, _ = net.encode(x, lengths)
        cuda_top, _ = net.cuda().encode(x.cuda(), lengths)
    torch.testing.assert_close(cuda_top.cpu(), cpu_top, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("task", "model"), [("sentiment", "rnn"), ("translation", "rnn"),
                                             ("captioning", "rnn"), ("binary", "mlp")])  # fmt: skip
def test_graphed_cuda_training_follows_the_cpu(
    tiny_spec, no_tf32, monkeypatch: pytest.MonkeyPatch, task: str, model: str
) -> None:
    """Replayed from CUDA graphs (training and evaluation), a fit gives the losses and metrics
    that eager CPU training gives from the same seed, to float rounding."""
    captures: list[bool] = []
    capture = GraphedSteps._capture

    def counted(self: GraphedSteps, index: torch.Tensor) -> None:
        capture(self, index)
        captures.append(self.graph is not None)

    monkeypatch.setattr(GraphedSteps, "_capture", counted)
    monkeypatch.setattr(training, "EVAL_BATCH", 32)  # 80 val rows: 2 full batches an epoch
    sizes = {"cell": "gru", "epochs": 3, "samples": 400, "batch_size": 32}
    losses, metrics = {}, {}
    for device in ("cpu", "cuda"):
        reports: list[EpochReport] = []
        fit(tiny_spec(task, model, device=device, **sizes), on_epoch=reports.append)
        losses[device] = [v for r in reports for v in (r.train.total, r.val.total)]
        metrics[device] = [v for r in reports for v in (r.train.metric, r.val.metric)]
    assert captures == [True, True]  # on CUDA: the training step, then the evaluation step
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=1e-2)
    # a prediction near a tie may fall either way: a few of 80 val rows
    assert metrics["cuda"] == pytest.approx(metrics["cpu"], abs=0.05)
