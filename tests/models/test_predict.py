"""Predicting one typed input with a trained network."""

from __future__ import annotations

import pytest

from models.data import build_data
from models.jsonl import DataError
from models.predict import parse_input, predict
from models.spec import spec_from_dict
from models.tasks import GENERATORS
from models.training import fit


@pytest.mark.parametrize("task", ["binary", "sentiment", "captioning", "translation"])
def test_a_trained_rnn_predicts_in_the_task_vocabulary(task: str) -> None:
    spec = spec_from_dict(
        {"task": task, "model": "rnn", "epochs": 2, "samples": 200, "device": "cpu", "hidden": 16}
    )
    data = build_data(spec)
    reports: list = []
    fit(spec, data, on_epoch=reports.append, checkpoints=True)
    import torch

    sample = GENERATORS[task](1, spec.seq_len, torch.Generator().manual_seed(99))[0]
    text = " ".join(map(str, sample["input"]))
    output = predict(spec, data, reports[-1].checkpoint, parse_input(text, data.dims.input_kind))
    if data.dims.output_kind == "label":
        assert output in data.output_vocab
    else:
        assert isinstance(output, list) and set(output) <= set(data.output_vocab)


def test_bad_inputs_are_one_line_errors() -> None:
    with pytest.raises(DataError, match="numbers"):
        parse_input("1, two, 3", "vector")
    with pytest.raises(DataError, match="empty"):
        parse_input("   ", "tokens")
    assert parse_input("[1, 2.5, -3]", "vector") == [1.0, 2.5, -3.0]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("nan, 1", "must contain finite numbers; found nan"),
        ("1, inf", "must contain finite numbers; found inf"),
        ("-Infinity, 1", "must contain finite numbers; found -inf"),
        ("1e39, 1", "must contain numbers within +-3.403e+38 (float32); found 1e+39"),
    ],
)
def test_non_finite_inputs_are_refused(text: str, found: str) -> None:
    with pytest.raises(DataError) as caught:
        parse_input(text, "vector")
    assert str(caught.value) == f"the input {found}"


def test_an_input_near_the_float32_limit_predicts_a_class(tiny_spec) -> None:
    rows = [{"input": [3e38 * (-1) ** i, 1.0], "target": i % 2} for i in range(40)]
    spec = tiny_spec("binary", "mlp", epochs=1)
    data = build_data(spec, rows)
    reports: list = []
    fit(spec, data, on_epoch=reports.append, checkpoints=True)
    assert predict(spec, data, reports[-1].checkpoint, [3e38, 1.0]) in {"0", "1"}
    with pytest.raises(DataError, match="too far from the training data"):  # 3e38 / 1e-6
        predict(spec, data, reports[-1].checkpoint, [1.0, 3e38])
