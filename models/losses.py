"""Per-timestep losses, masked over padding, for both loss kinds of the lecture notes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def timestep_mask(y_len: Tensor, steps: int) -> Tensor:
    """True where a sequence has an output at that timestep."""
    return torch.arange(steps, device=y_len.device) < y_len[:, None]  # (batch, steps)


def timestep_losses(logits: Tensor, y: Tensor, mask: Tensor, kind: str) -> Tensor:
    """The loss of every sequence at every timestep, zero where `mask` is False.

    `cross_entropy`: -log softmax(logits)[target]. `mse`: the squared distance between the
    softmax probabilities and the one-hot target, summed over classes (so its scale does not
    shrink with the vocabulary size).
    """
    if kind == "cross_entropy":
        losses = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # (batch, steps)
    elif kind == "mse":
        target = F.one_hot(y, logits.shape[-1]).to(logits.dtype)  # (batch, steps, classes)
        losses = (logits.softmax(-1) - target).square().sum(-1)  # (batch, steps)
    else:
        raise ValueError(f"loss must be one of mse, cross_entropy; got {kind!r}")
    # where, not multiply: a padded position must not turn an inf or nan into the total
    return torch.where(mask, losses, losses.new_zeros(()))


def total_loss(losses: Tensor) -> Tensor:
    """L: the mean over sequences of the sum over timesteps of their losses."""
    return losses.sum() / losses.shape[0]
