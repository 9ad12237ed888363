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
    spec = spec_from_dict({"task": task, "model": "rnn", "epochs": 2, "samples": 200,
                           "device": "cpu", "hidden": 16})
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
