"""Build the network a spec names for a task's dimensions (the hook checkpoints will reuse)."""

from __future__ import annotations

from torch import nn

from models.data import Dims
from models.mlp import MLP, MLPConfig
from models.rnn import RNN, RNNConfig
from models.spec import TrainSpec


def build_model(spec: TrainSpec, dims: Dims) -> nn.Module:
    """An untrained MLP or RNN; both map (x, lengths, y) to logits (batch, steps, classes)."""
    tokens = dims.input_kind == "tokens"
    if spec.model == "mlp":
        return MLP(
            MLPConfig(
                dims.input_size, dims.input_len, tokens, dims.output_size, dims.output_len,
                spec.hidden, spec.layers, spec.activation, spec.dropout,
            )
        )
    if spec.model == "rnn":
        return RNN(
            RNNConfig(
                dims.input_size, tokens, dims.output_size, dims.output_len,
                dims.output_kind == "tokens", spec.cell, spec.hidden, spec.layers, spec.dropout,
            )
        )
    raise ValueError(f"model must be one of mlp, rnn; got {spec.model!r}")
