"""A stacked SGD step is each member's own SGD step (after clip_grad_norm_), bit for bit."""

from __future__ import annotations

import pytest
import torch

from models.mlp import MLP, MLPConfig
from models.stacked import StackedMLP, StackedSGD

# (lr, momentum, weight decay, clip): with and without momentum, decay and clipping
SETTINGS = [
    (0.1, 0.9, 0.0, 1.0), (0.37, 0.0, 0.01, 0.0), (0.003, 0.5, 0.2, 0.05), (1.3, 0.0, 0.0, 2.0)
]  # fmt: skip


def _models(width: int, hidden: int) -> list[MLP]:
    config = MLPConfig(input_size=width, input_len=1, tokens=False, output_size=5, output_len=3,
                       hidden=hidden, layers=2)  # fmt: skip
    models = []
    for seed in range(len(SETTINGS)):
        torch.manual_seed(seed)
        models.append(MLP(config))
    return models


@pytest.mark.parametrize(("width", "hidden"), [(1, 1), (7, 17), (81, 128), (4097, 3)])
def test_a_stacked_step_equals_each_members_own_sgd_step(width: int, hidden: int) -> None:
    models = _models(width, hidden)
    optimizers = [
        torch.optim.SGD(m.parameters(), lr=lr, momentum=momentum, weight_decay=decay)
        for m, (lr, momentum, decay, _) in zip(models, SETTINGS, strict=True)
    ]
    clips = [clip for *_, clip in SETTINGS]
    solo = [[p.detach().clone().requires_grad_(True) for p in m.parameters()] for m in models]
    solo_optimizers = [
        torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=decay)
        for params, (lr, momentum, decay, _) in zip(solo, SETTINGS, strict=True)
    ]
    stacked = StackedMLP(models)
    generator = torch.Generator().manual_seed(3)
    for _ in range(4):
        optimizer = StackedSGD(stacked, optimizers, clips)  # rebuilt as at every epoch
        for param in stacked.parameters():
            param.grad = torch.randn(param.shape, generator=generator) * 3
        for k, params in enumerate(solo):
            for param, stacked_param in zip(params, stacked.parameters(), strict=True):
                param.grad = stacked_param.grad[k].clone()
            if clips[k]:
                torch.nn.utils.clip_grad_norm_(params, clips[k])
            solo_optimizers[k].step()
        optimizer.step()
        optimizer.write_back()
    for k, params in enumerate(solo):
        for param, stacked_param in zip(params, stacked.parameters(), strict=True):
            assert torch.equal(param.detach(), stacked_param.detach()[k])
