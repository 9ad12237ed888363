from __future__ import annotations

import pytest
import torch

from models.data import build_data
from models.mlp import MLP, activation
from models.networks import build_model
from models.registry import TASKS
from models.rnn import RNN, recurrent
from models.spec import MODELS


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("model", MODELS)
def test_forward_and_decode_shapes(tiny_spec, task: str, model: str) -> None:
    spec = tiny_spec(task, model, layers=2, dropout=0.1)
    data = build_data(spec)
    net = build_model(spec, data.dims)
    assert isinstance(net, MLP if model == "mlp" else RNN)
    split = data.train
    x, lengths, y = split.x[:5], split.lengths[:5], split.y[:5]
    logits = net(x, lengths, y)
    assert logits.shape == (5, data.dims.output_len, data.dims.output_size)
    assert torch.isfinite(logits).all()
    net.eval()
    predicted = net.decode(x, lengths)
    assert predicted.shape == (5, data.dims.output_len) and predicted.dtype == torch.long


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("task", list(TASKS))
def test_every_cell_runs_every_task(tiny_spec, cell: str, task: str) -> None:
    spec = tiny_spec(task, "rnn", cell=cell, layers=2)
    data = build_data(spec)
    net = build_model(spec, data.dims)
    logits = net(data.train.x[:3], data.train.lengths[:3], data.train.y[:3])
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_rnn_ignores_padding_after_each_sequence(tiny_spec) -> None:
    spec = tiny_spec("sentiment", "rnn")
    data = build_data(spec)
    net = build_model(spec, data.dims).eval()
    x, lengths = data.train.x[:4], data.train.lengths[:4]
    padded = torch.cat([x, torch.zeros(4, 3, dtype=torch.long)], 1)  # extra PAD columns
    with torch.no_grad():
        assert torch.allclose(net(x, lengths), net(padded, lengths), atol=1e-6)


@pytest.mark.parametrize(("task", "cell"), [("sentiment", "lstm"), ("translation", "gru")])
def test_encoding_over_the_padding_matches_packing(mixed_batch, task: str, cell: str) -> None:
    """The GPU's encoder runs over the padding and reads each sequence's last output; on the
    CPU it packs. Both summarise a batch of mixed lengths alike, and give a one-layer decoder
    the same state."""
    net, x, lengths = mixed_batch(task, cell)
    with torch.no_grad():
        packed_top, packed_state = net.encode(x, lengths)
        padded_top, padded_state = net._encode_over_padding(x)
    torch.testing.assert_close(padded_top, packed_top)
    if cell != "lstm":
        torch.testing.assert_close(padded_state, packed_state)


def test_teacher_forcing_is_causal(tiny_spec) -> None:
    spec = tiny_spec("translation", "rnn")
    data = build_data(spec)
    net = build_model(spec, data.dims).eval()
    x, lengths, y = data.train.x[:4], data.train.lengths[:4], data.train.y[:4]
    changed = y.clone()
    changed[:, 3:] = 5  # later targets must not affect earlier outputs
    with torch.no_grad():
        assert torch.allclose(net(x, lengths, y)[:, :4], net(x, lengths, changed)[:, :4])


def test_lookups_name_valid_choices() -> None:
    with pytest.raises(ValueError, match="rnn, lstm, gru"):
        recurrent("transformer", 2, 2, 1, 0.0)
    with pytest.raises(ValueError, match="relu, tanh, sigmoid"):
        activation("gelu")
