from __future__ import annotations

import pytest
import torch

from models.data import BOS, EOS, PAD, UNK, build_data
from models.jsonl import DataError


def test_builtin_split_sizes_dims_and_seeding(tiny_spec) -> None:
    spec = tiny_spec("translation", "rnn", samples=100, val_fraction=0.25)
    data = build_data(spec)
    assert (len(data.train), len(data.val)) == (75, 25)
    assert data.dims.input_kind == "tokens" and data.dims.output_kind == "tokens"
    assert data.train.x.shape == (75, data.dims.input_len)
    assert data.train.y.shape == (75, data.dims.output_len)
    assert data.output_vocab[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    again = build_data(spec)
    assert torch.equal(data.train.x, again.train.x) and torch.equal(data.val.y, again.val.y)
    other = build_data(tiny_spec("translation", "rnn", samples=100, seed=1))
    assert not torch.equal(data.train.x, other.train.x)


def test_data_seed_draws_the_data_and_split_in_place_of_the_seed(tiny_spec) -> None:
    """Seed replicates that share a data seed share one dataset and split; without one, the
    seed draws them, as before the data seed existed."""
    first = build_data(tiny_spec("sentiment", "rnn", seed=1, data_seed=9))
    second = build_data(tiny_spec("sentiment", "rnn", seed=2, data_seed=9))
    assert torch.equal(first.train.x, second.train.x) and torch.equal(first.val.y, second.val.y)
    unset = build_data(tiny_spec("sentiment", "rnn", seed=9))
    assert torch.equal(first.train.x, unset.train.x) and torch.equal(first.val.x, unset.val.x)
    assert not torch.equal(first.train.x, build_data(tiny_spec("sentiment", "rnn", seed=1)).train.x)
    rows = [{"input": [float(i)], "target": i % 2} for i in range(30)]
    split = [build_data(tiny_spec("binary", "mlp", seed=s, data_seed=4), rows) for s in (0, 5)]
    assert torch.equal(split[0].val.x, split[1].val.x)


def test_targets_end_with_eos_and_pad_after(tiny_spec) -> None:
    data = build_data(tiny_spec("captioning", "rnn"))
    split = data.train
    for row in range(len(split)):
        n = int(split.y_len[row])
        assert split.y[row, n - 1] == EOS
        assert (split.y[row, n:] == PAD).all() and (split.y[row, : n - 1] > EOS).all()
    assert split.steps == int(split.y_len.max()) <= data.dims.output_len


def test_labels_are_length_one_sequences(tiny_spec) -> None:
    data = build_data(tiny_spec("sentiment", "mlp"))
    assert data.train.y.shape == (len(data.train), 1) and data.train.steps == 1
    assert data.output_vocab == ["neg", "pos"] and data.dims.output_size == 2
    assert (data.train.lengths == (data.train.x != PAD).sum(1)).all()


def test_user_rows_standardised_with_train_statistics_only(tiny_spec) -> None:
    train = [{"input": [float(i), 10.0 + 2 * i], "target": i % 2} for i in range(8)]
    val = [{"input": [100.0, 100.0], "target": 0}, {"input": [0.0, 10.0], "target": 1}]
    data = build_data(tiny_spec("binary", "mlp"), train, val)
    assert torch.allclose(data.train.x.mean(0), torch.zeros(2), atol=1e-6)
    assert torch.allclose(data.train.x.std(0, unbiased=False), torch.ones(2), atol=1e-5)
    assert data.val.x[0, 0] > 10  # scaled by train statistics, not re-centred on its own
    assert torch.allclose(data.mean, torch.tensor([3.5, 17.0]))


def test_user_rows_vocabulary_from_train_and_unknown_tokens(tiny_spec) -> None:
    train = [
        {"input": ["le", "chat"], "target": ["the", "cat"]},
        {"input": ["un", "chien", "noir"], "target": ["a", "black", "dog"]},
    ]
    val = [{"input": ["le", "loup"], "target": ["the", "wolf"]}]
    data = build_data(tiny_spec("translation", "rnn"), train, val)
    assert data.input_vocab == [
        "<pad>",
        "<unk>",
        "<bos>",
        "<eos>",
        "chat",
        "chien",
        "le",
        "noir",
        "un",
    ]
    assert data.val.x[0].tolist()[:2] == [data.input_vocab.index("le"), UNK]
    assert data.val.y[0].tolist()[:3] == [data.output_vocab.index("the"), UNK, EOS]
    assert data.dims.output_len == 4 and data.train.steps == 4 and data.val.steps == 3
    assert BOS not in data.train.y


def test_user_rows_split_by_val_fraction_seeded(tiny_spec) -> None:
    rows = [{"input": [float(i)], "target": i % 3} for i in range(50)]
    spec = tiny_spec("binary", "rnn", val_fraction=0.2, seed=4)
    first, second = build_data(spec, rows), build_data(spec, rows)
    assert (len(first.train), len(first.val)) == (40, 10)
    assert torch.equal(first.val.x, second.val.x)
    assert first.output_vocab == ["0", "1", "2"]


def test_val_rows_must_match_vector_width(tiny_spec) -> None:
    train = [{"input": [1.0, 2.0], "target": 0}, {"input": [2.0, 1.0], "target": 1}]
    with pytest.raises(DataError, match="2 numbers"):
        build_data(tiny_spec("binary", "mlp"), train, [{"input": [1.0], "target": 0}])


def test_inputs_near_the_float32_limit_train_to_finite_losses(tiny_spec) -> None:
    from models.training import fit

    rows = [{"input": [3e38 * (-1) ** i, float(i)], "target": i % 2} for i in range(40)]
    spec = tiny_spec("binary", "mlp")
    data = build_data(spec, rows)
    assert torch.isfinite(data.train.x).all() and torch.isfinite(data.mean).all()
    reports: list = []
    fit(spec, data, on_epoch=reports.append)
    assert all(torch.isfinite(torch.tensor(r.val.total)) for r in reports)


def test_ordinary_inputs_are_standardised_in_float32_bit_for_bit(tiny_spec) -> None:
    gen = torch.Generator().manual_seed(3)
    rows = [{"input": torch.randn(4, generator=gen).tolist(), "target": k % 2} for k in range(50)]
    data = build_data(tiny_spec("binary", "mlp"), rows[:40], rows[40:])
    train, val = (torch.tensor([r["input"] for r in part]) for part in (rows[:40], rows[40:]))
    mean, std = train.mean(0), train.std(0, unbiased=False).clamp_min(1e-6)
    assert torch.equal(data.train.x, (train - mean) / std)  # a seeded run's numbers stay put
    assert torch.equal(data.val.x, (val - mean) / std)
