"""Encode task rows (built-in or a user's JSONL) into tensors: vocabularies, padding, splits.

Numeric inputs are standardised with statistics of the training part only; vocabularies come
from the training rows, so a validation token never seen in training reads as <unk>.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from models.jsonl import DataError
from models.registry import TASKS
from models.spec import TrainSpec
from models.tasks import GENERATORS

PAD, UNK, BOS, EOS = 0, 1, 2, 3  # ids of the reserved tokens in every token vocabulary
SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]


@dataclass(frozen=True)
class Dims:
    """What a network needs to know about its task; enough to rebuild it for a checkpoint."""

    input_kind: str  # "vector" or "tokens"
    input_size: int  # numbers per input vector, or the input vocabulary size
    input_len: int  # 1 for vectors; the longest token input
    output_kind: str  # "label" or "tokens"
    output_size: int  # classes, or the target vocabulary size
    output_len: int  # 1 for labels; the longest target including its <eos>


@dataclass(frozen=True)
class Split:
    """One encoded split. Labels are stored as length-1 sequences so every task looks alike."""

    x: Tensor  # (n, input_size) float, or (n, input_len) token ids padded with PAD
    lengths: Tensor  # (n,) int64 input lengths, kept on the CPU for packing
    y: Tensor  # (n, output_len) int64 class or token ids, padded with PAD
    y_len: Tensor  # (n,) int64 output timesteps per sample (1 for labels)
    steps: int  # the longest target in this split: the number of per-timestep losses

    def __len__(self) -> int:
        return self.y.shape[0]


@dataclass(frozen=True)
class Encoding:
    """How a network reads its inputs and spells its outputs: the dimensions, the vocabularies
    and the input scaling of the data it was trained on. With the weights it is all that
    predicting needs: neither the data nor its generator. Plain values only, so that it is
    JSON (an exported model's .json) and passes `torch.load(weights_only=True)` (a checkpoint).

    Example (sentiment): {"dims": {"input_kind": "tokens", ...}, "input_vocab": ["<pad>",
    "<unk>", "<bos>", "<eos>", "a", "actors", ...], "output_vocab": ["neg", "pos"],
    "mean": null, "std": null}; a token id is its index in input_vocab, a vector input x is
    read as (x - mean) / std, and output id i is output_vocab[i].
    """

    dims: Dims
    input_vocab: list[str]  # token inputs only
    output_vocab: list[str]  # class labels as strings, or target tokens
    mean: list[float] | None  # per-feature standardisation of vector inputs
    std: list[float] | None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "dims": asdict(self.dims)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Encoding:
        return cls(**{**raw, "dims": Dims(**raw["dims"])})

    def scaling(self) -> tuple[Tensor, Tensor]:
        """mean and std as the float32 tensors `standardise` takes (vector inputs only)."""
        if self.mean is None or self.std is None:
            raise ValueError("token inputs have no scaling")
        return torch.tensor(self.mean), torch.tensor(self.std)


@dataclass(frozen=True)
class TaskData:
    task: str
    dims: Dims
    train: Split
    val: Split
    input_vocab: list[str]  # token inputs only
    output_vocab: list[str]  # class labels as strings, or target tokens
    mean: Tensor | None  # (input_size,) standardisation of vector inputs
    std: Tensor | None

    def encoding(self) -> Encoding:
        """The encoding of this data, as plain values."""
        mean = None if self.mean is None else self.mean.tolist()  # sync: CPU statistics
        std = None if self.std is None else self.std.tolist()
        return Encoding(self.dims, list(self.input_vocab), list(self.output_vocab), mean, std)


def _vocabulary(sequences: list[list[str]]) -> list[str]:
    return SPECIALS + sorted({token for sequence in sequences for token in sequence})


def _token_ids(
    sequences: list[list[str]], index: dict[str, int], width: int, end: bool
) -> tuple[Tensor, Tensor]:
    """Pad sequences of tokens to `width` ids (plus <eos> when `end`); return ids and lengths."""
    ids = torch.full((len(sequences), width), PAD, dtype=torch.long)
    lengths = []
    for row, sequence in enumerate(sequences):
        encoded = [index.get(token, UNK) for token in sequence] + ([EOS] if end else [])
        ids[row, : len(encoded)] = torch.tensor(encoded, dtype=torch.long)
        lengths.append(len(encoded))
    return ids, torch.tensor(lengths, dtype=torch.long)


def _statistics(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-feature mean and std of (n, features) float32 inputs, both finite float32.

    Numbers near the float32 limit (models.jsonl lets them in) overflow float32 sums and
    squares; only then is it done again in float64. Not float64 always: every other input
    would move by up to an ulp, and a seeded run would no longer give the numbers it gave."""
    mean, std = x.mean(0), x.std(0, unbiased=False)
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):  # sync: CPU data
        mean, std = x.double().mean(0).float(), x.double().std(0, unbiased=False).float()
    return mean, std.clamp_min(1e-6)


def standardise(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """(x - mean) / std in float32, redone in float64 where a difference overflows (as in
    `_statistics`); non-finite only where the result itself is beyond float32."""
    z = (x - mean) / std
    if torch.isfinite(z).all():  # sync: CPU data
        return z
    return ((x.double() - mean.double()) / std.double()).float()


def _label_key(label: int | str) -> tuple[bool, int | str]:
    return isinstance(label, str), label


def _encode(
    task: str, train: list[dict], val: list[dict]
) -> tuple[Dims, list[Split], list[str], list[str], Tensor | None, Tensor | None]:
    info = TASKS[task]
    parts = (train, val)
    mean = std = None
    input_vocab: list[str] = []
    if info.input_kind == "vector":
        width = len(train[0]["input"])
        if any(len(row["input"]) != width for row in val):
            raise DataError(f"validation inputs must have {width} numbers like the training data")
        xs = [torch.tensor([row["input"] for row in part], dtype=torch.float32) for part in parts]
        mean, std = _statistics(xs[0])
        xs = [standardise(x, mean, std) for x in xs]  # train statistics only: val stays unseen
        lengths = [torch.ones(len(part), dtype=torch.long) for part in parts]
        input_size, input_len = width, 1
    else:
        input_vocab = _vocabulary([row["input"] for row in train])
        index = {token: i for i, token in enumerate(input_vocab)}
        input_len = max(len(row["input"]) for part in parts for row in part)
        inputs = [[row["input"] for row in part] for part in parts]
        encoded = [_token_ids(part, index, input_len, False) for part in inputs]
        xs, lengths = [e[0] for e in encoded], [e[1] for e in encoded]
        input_size = len(input_vocab)
    if info.target_kind == "label":
        classes = sorted({row["target"] for part in parts for row in part}, key=_label_key)
        index = {label: i for i, label in enumerate(classes)}
        ys = [torch.tensor([[index[row["target"]]] for row in part]) for part in parts]
        y_lens = [torch.ones(len(part), dtype=torch.long) for part in parts]
        output_vocab, output_len = [str(label) for label in classes], 1
    else:
        output_vocab = _vocabulary([row["target"] for row in train])
        index = {token: i for i, token in enumerate(output_vocab)}
        output_len = 1 + max(len(row["target"]) for part in parts for row in part)
        targets = [[row["target"] for row in part] for part in parts]
        encoded = [_token_ids(part, index, output_len, True) for part in targets]
        ys, y_lens = [e[0] for e in encoded], [e[1] for e in encoded]
    dims = Dims(
        info.input_kind, input_size, input_len, info.target_kind, len(output_vocab), output_len
    )
    splits = [
        Split(x, length, y, y_len, int(y_len.max()))
        for x, length, y, y_len in zip(xs, lengths, ys, y_lens, strict=True)
    ]
    return dims, splits, input_vocab, output_vocab, mean, std


def _split_rows(
    rows: list[dict], fraction: float, gen: torch.Generator
) -> tuple[list[dict], list[dict]]:
    if len(rows) < 2:
        raise DataError(f"need at least 2 rows to hold some out for validation; got {len(rows)}")
    n_val = min(len(rows) - 1, max(1, round(len(rows) * fraction)))
    order = torch.randperm(len(rows), generator=gen).tolist()
    return [rows[i] for i in order[n_val:]], [rows[i] for i in order[:n_val]]


def data_seed(spec: TrainSpec) -> int:
    """The seed of the spec's built-in data and validation split."""
    return spec.seed if spec.data_seed is None else spec.data_seed


def build_data(
    spec: TrainSpec, train_rows: list[dict] | None = None, val_rows: list[dict] | None = None
) -> TaskData:
    """Encode the spec's data: the built-in generator seeded by the spec's data seed (its seed
    when unset), or the user's validated rows."""
    gen = torch.Generator().manual_seed(data_seed(spec))
    if train_rows is None:
        train_rows = GENERATORS[spec.task](spec.samples, spec.seq_len, gen)
    if val_rows is None:
        train_rows, val_rows = _split_rows(train_rows, spec.val_fraction, gen)
    dims, (train, val), input_vocab, output_vocab, mean, std = _encode(
        spec.task, train_rows, val_rows
    )
    return TaskData(spec.task, dims, train, val, input_vocab, output_vocab, mean, std)
