from __future__ import annotations

import pytest

from models.spec import PARAM_NAMES, SpecError, applied_params, spec_from_dict


def test_defaults_fill_what_the_user_left_out() -> None:
    spec = spec_from_dict({"task": "sentiment", "model": "rnn", "lr": "0.05"})
    assert spec.lr == 0.05
    assert spec.cell in ("rnn", "lstm", "gru")
    assert set(spec.params()) == set(PARAM_NAMES)
    assert spec_from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("task", "vision", "task must be one of"),
        ("model", "cnn", "model must be one of"),
        ("lr", 0, "lr must be in (0"),
        ("lr", -0.1, "lr must be in (0"),
        ("dropout", 1.0, "dropout must be in [0, 1)"),
        ("dropout", -0.1, "dropout must be in [0, 1)"),
        ("hidden", 0, "hidden must be in [1"),
        ("epochs", 0, "epochs must be in [1"),
        ("hidden", 10**9, "hidden must be in [1, 4096]"),
        ("batch_size", 2**40, "batch_size must be in"),
        ("lr", float("nan"), "lr must be finite"),
        ("lr", "inf", "lr must be finite"),
        ("hidden", "abc", "hidden must be a number"),
        ("hidden", 2.5, "hidden must be a whole number"),
        ("epochs", True, "epochs must be a number"),
        ("activation", "gelu", "activation must be one of relu, tanh, sigmoid"),
        ("data", "not-a-digest", "data must be a sha256"),
        ("data_seed", -1, "data_seed must be in [0, 2.14748e+09]"),
        ("data_seed", 1.5, "data_seed must be a whole number"),
        ("colour", "red", "unknown spec field 'colour'"),
    ],
)
def test_invalid_values_are_refused_with_one_line(field: str, value: object, message: str) -> None:
    raw = {"task": "binary", "model": "mlp", field: value}
    with pytest.raises(SpecError) as caught:
        spec_from_dict(raw)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_data_seed_is_optional_and_kept() -> None:
    old = spec_from_dict({"task": "binary", "model": "mlp", "seed": 3}).to_dict()
    del old["data_seed"]  # a spec stored before the field existed
    assert spec_from_dict(old).data_seed is None
    spec = spec_from_dict({"task": "binary", "model": "mlp", "seed": 3, "data_seed": "7"})
    assert spec.data_seed == 7 and spec_from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("task", "honoured", "refused"),
    [("binary", 512, 513), ("sentiment", 3, 2), ("captioning", 18, 19), ("translation", 5, 4)],
)
def test_seq_len_is_bounded_by_what_the_task_generates(
    task: str, honoured: int, refused: int
) -> None:
    """Captions have at most 18 words: a longer seq_len would be silently ignored."""
    assert spec_from_dict({"task": task, "model": "rnn", "seq_len": honoured}).seq_len == honoured
    with pytest.raises(SpecError, match=rf"seq_len \({task}\) must be in \[\d+, \d+\]; got"):
        spec_from_dict({"task": task, "model": "rnn", "seq_len": refused})


def test_a_run_records_every_param_that_applies_and_none_that_does_not() -> None:
    mlp = spec_from_dict({"task": "binary", "model": "mlp"}).params()
    assert set(mlp) == set(PARAM_NAMES)
    assert (mlp["activation"], mlp["samples"], mlp["val_fraction"], mlp["grad_clip"]) == (
        "tanh",
        2000,
        0.2,
        1.0,
    )
    assert mlp["cell"] is mlp["data"] is mlp["patience"] is mlp["prune_warmup"] is None
    data, val_data = "a" * 64, "b" * 64
    raw = {"task": "binary", "model": "rnn", "data": data, "val_data": val_data}
    rnn = spec_from_dict({**raw, "patience": 3, "time_limit": 60, "prune": "median"})
    assert applied_params(rnn.to_dict()) == {
        name: value for name, value in rnn.params().items() if value is not None
    }
    recorded = applied_params(rnn.to_dict())
    assert (recorded["cell"], recorded["data"], recorded["val_data"]) == ("gru", data, val_data)
    assert (recorded["patience"], recorded["time_limit"], recorded["prune_warmup"]) == (3, 60.0, 1)
    assert not {"activation", "seq_len", "samples", "val_fraction"} & set(recorded)
    assert applied_params({"model": "mlp", "cell": "gru", "lr": 0.1}) == {"model": "mlp", "lr": 0.1}
