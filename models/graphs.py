"""A training or evaluation step captured once as a CUDA graph and replayed for every full batch.

A small network on a GPU is bound by kernel launches, not arithmetic: one step of the sentiment
RNN (h64, batch 1024) launches about 150 kernels that run in under half a millisecond together,
while launching them from Python takes several. A replay launches them all at once.

The pattern is PyTorch's whole-network capture: a few eager steps on a side stream first (they
are real steps), then the capture (which runs nothing), then a replay per batch. The graph reads
its batch through a fixed index tensor and adds the batch's loss and metric sums to a fixed
accumulator, so no per-batch output has to be copied out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

log = logging.getLogger(__name__)

WARMUP_STEPS = 3  # eager steps before the capture, as PyTorch's CUDA graph notes advise

# (device index, CPU index) -> per-batch sums (see models/training.py, `batch_sums`)
Step = Callable[[Tensor, Tensor], Tensor]


class GraphedSteps:
    """Runs `step` for full batches of `batch_size`: eagerly for the first few, then by replay.

    `step` must not wait on the GPU (no `.item()`, no copy to the host): it runs the batch its
    index names and returns the batch's sums. With an `optimizer` (a training step: forward,
    backward, optimizer step), gradients are set to None before each eager step and before the
    capture, so the captured backward writes them afresh on every replay.
    """

    def __init__(
        self, step: Step, optimizer: torch.optim.Optimizer | None, batch_size: int, width: int
    ) -> None:
        self.step, self.optimizer, self.batch_size = step, optimizer, batch_size
        self.index = torch.zeros(batch_size, dtype=torch.long, device="cuda")
        self.sums = torch.zeros(width, dtype=torch.float64, device="cuda")
        self.sequences = 0  # the batches in `sums`, in rows
        self.stream = torch.cuda.Stream()
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager_steps = 0
        self.failed = False

    def fits(self, index: Tensor) -> bool:
        """Whether the batch `index` names is a full one, which this runs."""
        return len(index) == self.batch_size

    def __call__(self, on_device: Tensor, index: Tensor) -> None:
        """One step on the full batch `on_device` (its CPU copy: `index`)."""
        self.index.copy_(on_device)  # device to device, queued: the graph reads it from here
        if self.graph is None and not self.failed and self.eager_steps >= WARMUP_STEPS:
            self._capture(index)
        if self.graph is None:
            self._eager(index)
        else:
            self.graph.replay()
        self.sequences += self.batch_size

    def take_sums(self) -> tuple[Tensor, int]:
        """The sums added since the last call (a device tensor) and the rows they cover; the
        accumulator starts again from zero."""
        sums, sequences = self.sums.clone(), self.sequences
        self.sums.zero_()
        self.sequences = 0
        return sums, sequences

    def _eager(self, index: Tensor) -> None:
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            self._clear_gradients()
            self.sums.add_(self.step(self.index, index))
        torch.cuda.current_stream().wait_stream(self.stream)
        self.eager_steps += 1

    def _capture(self, index: Tensor) -> None:
        graph = torch.cuda.CUDAGraph()
        self._clear_gradients()
        try:
            with torch.cuda.graph(graph, stream=self.stream):
                self.sums.add_(self.step(self.index, index))
        except RuntimeError as exc:
            # Training goes on eagerly: slower, never wrong.
            log.warning("CUDA graph capture failed; training eagerly: %s", exc)
            self.failed = True
            return
        self.graph = graph

    def _clear_gradients(self) -> None:
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
