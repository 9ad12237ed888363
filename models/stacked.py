"""K MLPs of one shape as one: stacked weights, batched matmuls, and per-member SGD on stacked
tensors (HFTA's horizontal fusion), arranged so each member's numbers are the solo run's.

Why the numbers match `models.training` on the CPU: a batched matmul computes each member's
slice as the matmul of that slice alone, and a norm or sum over a member's slice reduces in
the order of the whole tensor alone; dropout masks come from each member's own generator in
the solo draw order; autograd's backward is replaced where it would round otherwise (`_Linear`,
`_bmm`); and SGD's fused multiply-adds (`add(alpha=...)`) become `addcmul` by a per-member
float32 tensor, which the CPU kernel rounds once as well (value 1: the same fused multiply-add). The
equality is tested, member by member, against solo runs (tests/models/test_fusion.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.mlp import MLP

SMALL_GEMM = 400  # below this many multiply-adds a matrix, bmm on the CPU loops on its own
# below this many rows, MKL's mm rounds some matrices otherwise than bmm's slice of them: on
# more than one thread, and where a slice starts off a 64-byte boundary, as no solo batch does
# (benchmarks/results/fusion_rnn_probe.md)
FEW_ROWS = 12


def _bmm(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """a @ b (+ bias) member by member, rounded as torch.mm (torch.addmm) rounds each alone.

    A CPU bmm of matrices this size or larger calls mm on each member's slice; a smaller one
    runs its own loop, which sums in another order, and one of few rows may round otherwise
    than mm of a fresh (aligned) matrix: those go through mm one by one, on aligned copies."""
    rows = a.shape[1]
    if a.shape[2] * rows * b.shape[2] >= SMALL_GEMM and rows >= FEW_ROWS:
        return torch.bmm(a, b) if bias is None else torch.baddbmm(bias[:, None, :], a, b)
    pairs = [(a[k].clone(), b[k].clone()) for k in range(a.shape[0])]
    if bias is None:
        return torch.stack([torch.mm(x, y) for x, y in pairs])
    return torch.stack([torch.addmm(bias[k], x, y) for k, (x, y) in enumerate(pairs)])


class _Linear(torch.autograd.Function):
    """x @ weight.T + bias for every member, (K, rows, in) -> (K, rows, out), with the backward
    of nn.Linear's addmm term for term: autograd's own bmm backward would compute the weight
    gradient as x.T @ grad, where addmm's computes grad.T @ x, which rounds differently."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return _bmm(x, weight.transpose(1, 2), bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        x, weight = ctx.saved_tensors
        grad_x = _bmm(grad, weight) if ctx.needs_input_grad[0] else None
        return grad_x, _bmm(grad.transpose(1, 2), x), grad.sum(1)


def per_member(values: list[float], like: Tensor) -> Tensor:
    """A float32 (K, 1, ...) tensor that broadcasts over each member's slice of `like`."""
    return torch.tensor(values, dtype=torch.float32).view(-1, *[1] * (like.dim() - 1))


class StackedMLP:
    """The weights of K MLPs of one config, stacked on a leading member dimension."""

    def __init__(self, models: list[MLP]) -> None:
        self.config = models[0].config
        self.activation = models[0].body[1]  # the same elementwise module in every block
        linears = [[m for m in model.modules() if isinstance(m, nn.Linear)] for model in models]
        self.sources = [list(model.parameters()) for model in models]
        self.weights = [
            torch.stack([row[i].weight.detach() for row in linears]) for i in range(len(linears[0]))
        ]  # (K, out, in) each
        self.biases = [
            torch.stack([row[i].bias.detach() for row in linears]) for i in range(len(linears[0]))
        ]  # (K, out) each
        for tensor in self.weights + self.biases:
            tensor.requires_grad_(True)

    def parameters(self) -> list[Tensor]:
        """In each solo model's `parameters()` order: weight, bias of every Linear."""
        return [t for pair in zip(self.weights, self.biases, strict=True) for t in pair]

    def __call__(self, x: Tensor, keep: list[Tensor | None]) -> Tensor:
        """Logits (K, batch, output_len, classes) of inputs (K, batch, ...); `keep[l]` scales
        block l's output (K, batch, hidden) the way dropout does, or is None in evaluation."""
        config = self.config
        if config.tokens:
            x = F.one_hot(x, config.input_size).flatten(2).float()  # (K, batch, len*vocab)
        for weight, bias, mask in zip(self.weights[:-1], self.biases[:-1], keep, strict=True):
            x = self.activation(_Linear.apply(x, weight, bias))
            if mask is not None:
                x = x * mask  # (K, batch, hidden)
        out = _Linear.apply(x, self.weights[-1], self.biases[-1])
        return out.view(x.shape[0], x.shape[1], config.output_len, config.output_size)

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy each member's slice into its own model."""
        for k, sources in enumerate(self.sources):
            for source, stacked in zip(sources, self.parameters(), strict=True):
                source.copy_(stacked[k])


class StackedSGD:
    """torch.optim.SGD (with clip_grad_norm_ before it) for every member at once, each with
    its own lr, momentum, weight decay and clip; momentum buffers move in and out of the
    members' own optimizers, which checkpoints and resumption use."""

    def __init__(
        self, stacked: StackedMLP, optimizers: list[torch.optim.SGD], clips: list[float]
    ) -> None:
        self.params, self.optimizers = stacked.parameters(), optimizers
        groups = [optimizer.param_groups[0] for optimizer in optimizers]
        self.momentum = [g["momentum"] for g in groups]
        decays = [g["weight_decay"] for g in groups]
        # per parameter: each member's -lr, momentum and weight decay, shaped to broadcast
        self.lr = [per_member([-g["lr"] for g in groups], p) for p in self.params]
        self.scale = [per_member(self.momentum, p) for p in self.params]
        self.decay = [per_member(decays, p) for p in self.params] if any(decays) else None
        still = [k for k, m in enumerate(self.momentum) if m == 0]  # members without momentum
        self.still = torch.tensor(still, dtype=torch.long)
        self.clips = clips
        self.sources = [list(o.param_groups[0]["params"]) for o in optimizers]
        self.buffers = [self._buffers(i) for i in range(len(self.params))]

    def _buffers(self, i: int) -> Tensor | None:
        found = [
            o.state[s[i]].get("momentum_buffer")
            for o, s in zip(self.optimizers, self.sources, strict=True)
        ]
        if all(buffer is None for buffer in found):
            return None
        param = self.params[i]
        return torch.stack(
            [
                param[k].detach().new_zeros(param.shape[1:]) if b is None else b
                for k, b in enumerate(found)
            ]
        )

    @torch.no_grad()
    def step(self) -> None:
        """Clip, then one SGD step, then clear the gradients."""
        grads = [p.grad for p in self.params]
        self._clip(grads)
        momentum = any(self.momentum)
        for i, (param, grad) in enumerate(zip(self.params, grads, strict=True)):
            # SGD's grad.add(param, alpha=weight_decay), buf.mul_(momentum).add_(grad) and
            # param.add_(buf, alpha=-lr), every member at once
            decayed = grad if self.decay is None else grad.addcmul(param, self.decay[i])
            buffer = self.buffers[i]
            if momentum:
                buffer = decayed if buffer is None else buffer.mul_(self.scale[i]).add_(decayed)
            param.addcmul_(buffer if momentum else decayed, self.lr[i])
            if momentum:
                # Members without momentum keep a zero buffer: 0 * 0 + gradient is the gradient
                # exactly, with no where() over every member, and no 0 * inf from a diverged one.
                if self.still.numel():
                    buffer.index_fill_(0, self.still, 0.0)
                self.buffers[i] = buffer
            param.grad = None

    def _clip(self, grads: list[Tensor]) -> None:
        if not any(self.clips):
            return
        norms = torch.stack(
            [torch.linalg.vector_norm(g, 2, dim=tuple(range(1, g.dim()))) for g in grads], 1
        )  # (K, parameters)
        total = torch.linalg.vector_norm(norms, 2, dim=1)  # (K,)
        limit = torch.tensor(self.clips, dtype=torch.float32)
        # clip_grad_norm_'s own arithmetic: max_norm / (total + 1e-6) is reciprocal() * max_norm
        coef = torch.clamp((total + 1e-6).reciprocal() * limit, max=1.0)
        coef = torch.where(limit > 0, coef, torch.ones_like(coef))
        for grad in grads:
            grad.mul_(coef.view((-1,) + (1,) * (grad.dim() - 1)))

    @torch.no_grad()
    def write_back(self) -> None:
        """Give each member's optimizer its momentum buffers, as SGD keeps them."""
        for k, (optimizer, sources) in enumerate(zip(self.optimizers, self.sources, strict=True)):
            if self.momentum[k] == 0:
                continue
            for source, buffer in zip(sources, self.buffers, strict=True):
                if buffer is not None:
                    optimizer.state[source]["momentum_buffer"] = buffer[k].clone()
