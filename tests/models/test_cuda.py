"""CUDA checks: skipped where no GPU is present (CI); run them on a GPU machine."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from models.data import build_data
from models.networks import build_model
from models.registry import TASKS
from models.spec import MODELS
from models.training import EpochReport, build_optimizer, fit, fit_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


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
    few = count_syncs(tiny_spec(task, "rnn", device="cuda", epochs=3, samples=200, batch_size=80))
    many = count_syncs(tiny_spec(task, "rnn", device="cuda", epochs=3, samples=200, batch_size=8))
    # the splits' move to the GPU, then a fixed few per epoch for its single read-back
    assert few == many <= 3 + 2 * 3


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
    sizes = {"device": "cuda", "cell": cell, "epochs": 3, "samples": 200}
    few = count_host_to_device_copies(tiny_spec(task, "rnn", batch_size=80, **sizes))
    many = count_host_to_device_copies(tiny_spec(task, "rnn", batch_size=8, **sizes))
    assert 0 < few == many  # the splits' move to the GPU, then one shuffle order per epoch


@pytest.mark.parametrize(("task", "cell"), [("sentiment", "gru"), ("translation", "gru"),
                                            ("translation", "lstm")])  # fmt: skip
def test_cuda_encoder_matches_the_cpu_one(tiny_spec, task: str, cell: str) -> None:
    """Over the padding (one GRU layer) or packed in an order sorted on the GPU (LSTM), the
    CUDA encoder summarises a batch of mixed lengths as the packed CPU encoder does."""
    spec = tiny_spec(task, "rnn", cell=cell)
    data = build_data(spec)
    net = build_model(spec, data.dims).eval()
    x, lengths = data.train.x[:32], data.train.lengths[:32]
    assert lengths.unique().numel() > 1
    with torch.no_grad():
        cpu_top, _ = net.encode(x, lengths)
        cuda_top, _ = net.cuda().encode(x.cuda(), lengths)
    torch.testing.assert_close(cuda_top.cpu(), cpu_top, atol=1e-5, rtol=1e-4)
