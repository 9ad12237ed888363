"""Running a trained network on one input typed by a user: encode, decode greedily, spell out.

Everything it needs travels with the weights (models.data.Encoding): neither the training
data nor the generator that made it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from models.data import EOS, PAD, UNK, Encoding, standardise
from models.jsonl import DataError, number_problem
from models.networks import build_model
from models.spec import TrainSpec


def parse_input(text: str, input_kind: str) -> list[float] | list[str]:
    """A vector as numbers separated by commas or spaces (JSON brackets allowed), or a
    sentence as whitespace-separated tokens."""
    if input_kind == "tokens":
        tokens = text.split()
        if not tokens:
            raise DataError("the input sentence is empty")
        return tokens
    parts = text.strip().strip("[]").replace(",", " ").split()
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        raise DataError(f"the input must be numbers separated by commas; got {text!r}") from None
    for number in numbers:
        problem = number_problem(number)  # the checks a data file's inputs pass
        if problem:
            raise DataError(f"the input {problem}")
    return numbers


def _encode(encoding: Encoding, raw: list[float] | list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    dims = encoding.dims
    if dims.input_kind == "vector":
        if len(raw) != dims.input_size:
            raise DataError(f"the input must have {dims.input_size} numbers; got {len(raw)}")
        raw_x = torch.tensor([raw], dtype=torch.float32)  # (1, features)
        x = standardise(raw_x, *encoding.scaling())
        if not torch.isfinite(x).all():  # sync: one small input, checked once
            raise DataError("the input is too far from the training data to read in float32")
        return x, torch.ones(1, dtype=torch.long)
    index = {token: i for i, token in enumerate(encoding.input_vocab)}
    ids = [index.get(token, UNK) for token in raw][: dims.input_len]  # the MLP's fixed width
    x = torch.full((1, dims.input_len), PAD, dtype=torch.long)
    x[0, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return x, torch.tensor([len(ids)], dtype=torch.long)


@torch.no_grad()
def predict(
    spec: TrainSpec, encoding: Encoding, weights: Mapping[str, torch.Tensor],
    raw: list[float] | list[str],
) -> str | list[str]:
    """The label, or the token sequence up to <eos>, that the network with `weights` (a state
    dict: a checkpoint's `model`, or an exported .pt file) outputs for `raw`."""
    model = build_model(spec, encoding.dims)
    model.load_state_dict(weights)
    model.eval()
    x, lengths = _encode(encoding, raw)
    predicted = model.decode(x, lengths)[0].tolist()  # sync: one input, read back once
    if encoding.dims.output_kind == "label":
        return encoding.output_vocab[predicted[0]]
    tokens = []
    for token in predicted:
        if token == EOS:
            break
        tokens.append(encoding.output_vocab[token])
    return tokens
