from __future__ import annotations

import pytest
import torch

from models.tasks import GENERATORS, binary, captioning, sentiment, translation


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("task", list(GENERATORS))
def test_seeded_generators_repeat_and_vary(task: str) -> None:
    first = GENERATORS[task](30, 9, gen(1))
    assert first == GENERATORS[task](30, 9, gen(1))
    assert first != GENERATORS[task](30, 9, gen(2))
    assert len(first) == 30 and all(set(row) == {"input", "target"} for row in first)


def test_binary_shapes_and_no_linear_boundary() -> None:
    rows = binary(2000, 8, gen())
    x = torch.tensor([row["input"] for row in rows])  # (n, 8)
    y = torch.tensor([row["target"] for row in rows], dtype=torch.float32)
    assert x.shape == (2000, 8) and 0.4 < y.mean() < 0.6
    # the best least-squares linear classifier stays near chance on concentric shells
    features = torch.cat([x, torch.ones(2000, 1)], 1)
    weights = torch.linalg.lstsq(features, 2 * y[:, None] - 1).solution
    accuracy = ((features @ weights).squeeze(1) > 0).float().eq(y).float().mean()
    assert accuracy < 0.65
    radius = x.norm(dim=1)
    assert ((radius < 1.15).float() == y).float().mean() > 0.97  # the true boundary works


POSITIVE = {"good", "great", "superb", "fun", "lovely"}
NEGATIVE = {"bad", "awful", "boring", "dull", "poor"}


def rule_label(tokens: list[str]) -> str:
    """The label the generator's rule gives: the sentiment word, flipped by "not" before it."""
    at = next(i for i, token in enumerate(tokens) if token in POSITIVE | NEGATIVE)
    return "pos" if (tokens[at] in POSITIVE) != (tokens[at - 1] == "not") else "neg"


def test_sentiment_lengths_and_negation_rule() -> None:
    rows = sentiment(300, 12, gen())
    for row in rows:
        tokens = row["input"]
        assert 6 <= len(tokens) <= 12
        at = next(i for i, token in enumerate(tokens) if token in POSITIVE | NEGATIVE)
        assert at < len(tokens) // 2  # the deciding word sits in the first half
        assert row["target"] == rule_label(tokens)
    assert any(row["input"].count("not") == 2 for row in rows)  # distractors occur


def test_sentiment_noise_flips_labels() -> None:
    noisy = sentiment(400, 12, gen(), noise=0.3)
    flipped = sum(row["target"] != rule_label(row["input"]) for row in noisy)
    assert 80 < flipped < 160


def test_captioning_images_and_captions() -> None:
    rows = captioning(200, 8, gen())
    assert {len(row["input"]) for row in rows} == {81}
    lengths = {len(row["target"]) for row in rows}
    assert lengths == {2, 4, 6, 8}  # one to four shapes, two words each
    assert {len(row["input"]) for row in captioning(5, 8, gen(), cell=5)} == {225}


def test_translation_changes_order_and_length() -> None:
    rows = translation(300, 9, gen())
    assert all(5 <= len(row["input"]) <= 9 for row in rows)
    assert any(len(row["input"]) != len(row["target"]) for row in rows)
    source_words = {token for row in rows for token in row["input"]}
    assert not source_words & {token for row in rows for token in row["target"]}
    example = next(row for row in rows if row["input"][0] == "the" and len(row["input"]) == 5)
    assert example["target"][-1] in {"miru", "suku", "ou"}  # the verb moves to the end
