"""The MLP: reads a whole (flattened, one-hot) input and emits every output position at once."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}")
    return ACTIVATIONS[name]()


@dataclass(frozen=True)
class MLPConfig:
    input_size: int  # numbers per vector, or the input vocabulary size for tokens
    input_len: int  # 1 for vectors; token positions, each one-hot encoded
    tokens: bool  # token ids in (one-hot per position) rather than numbers
    output_size: int
    output_len: int  # output positions, all emitted at once
    hidden: int = 64
    layers: int = 1
    activation: str = "tanh"
    dropout: float = 0.0


class MLP(nn.Module):
    autoregressive = False  # every output position comes from one forward pass
    graphable = True  # on CUDA: the same kernels for every batch of one size (models/graphs.py)

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        width = config.input_size * (config.input_len if config.tokens else 1)
        blocks: list[nn.Module] = []
        for _ in range(config.layers):
            blocks += [nn.Linear(width, config.hidden), activation(config.activation)]
            blocks.append(nn.Dropout(config.dropout))
            width = config.hidden
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, config.output_len * config.output_size)

    def forward(self, x: Tensor, lengths: Tensor, y: Tensor | None = None) -> Tensor:
        """Logits for every output position; `lengths` and `y` are unused (no recurrence)."""
        if self.config.tokens:
            x = F.one_hot(x, self.config.input_size).flatten(1).float()  # (batch, len*vocab)
        out = self.head(self.body(x))  # (batch, output_len*classes)
        return out.view(x.shape[0], self.config.output_len, self.config.output_size)

    def decode(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Predicted ids at every output position."""
        return self.forward(x, lengths).argmax(-1)  # (batch, output_len)
