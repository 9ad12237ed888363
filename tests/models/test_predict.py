"""Predicting one typed input with a trained network."""

from __future__ import annotations

import pytest
import torch

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
    sample = GENERATORS[task](1, spec.seq_len, torch.Generator().manual_seed(99))[0]
    text = " ".join(map(str, sample["input"]))
    weights = reports[-1].checkpoint.model
    output = predict(spec, data.encoding(), weights, parse_input(text, data.dims.input_kind))
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
    weights = reports[-1].checkpoint.model
    assert predict(spec, data.encoding(), weights, [3e38, 1.0]) in {"0", "1"}
    with pytest.raises(DataError, match="too far from the training data"):  # 3e38 / 1e-6
        predict(spec, data.encoding(), weights, [1.0, 3e38])


@pytest.mark.parametrize("task", ["binary", "sentiment", "captioning", "translation"])
def test_a_checkpoint_predicts_without_the_data_or_its_generator(
    task: str, tiny_spec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The encoding a checkpoint carries, through JSON, reads inputs as the data did."""
    import json

    import models.data
    from models.data import Encoding

    spec = tiny_spec(task, "rnn", epochs=2)
    data = build_data(spec)
    reports: list = []
    fit(spec, data, on_epoch=reports.append, checkpoints=True)
    state = reports[-1].checkpoint
    samples = GENERATORS[task](5, spec.seq_len, torch.Generator().manual_seed(7))
    texts = [" ".join(map(str, sample["input"])) for sample in samples]
    kind = data.dims.input_kind
    expected = [predict(spec, data.encoding(), state.model, parse_input(t, kind)) for t in texts]

    def unavailable(*args: object, **kwargs: object) -> None:
        raise AssertionError("predicting must not rebuild the data")

    monkeypatch.setattr(models.data, "build_data", unavailable)
    monkeypatch.setitem(GENERATORS, task, unavailable)
    encoding = Encoding.from_dict(json.loads(json.dumps(state.encoding)))
    assert encoding == data.encoding()
    assert [predict(spec, encoding, state.model, parse_input(t, kind)) for t in texts] == expected
