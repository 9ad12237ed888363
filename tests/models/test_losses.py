from __future__ import annotations

import math

import pytest
import torch

from models.data import build_data
from models.losses import timestep_losses, timestep_mask, total_loss
from models.networks import build_model
from models.training import evaluate


def test_mask_marks_real_timesteps() -> None:
    assert timestep_mask(torch.tensor([1, 3]), 3).tolist() == [
        [True, False, False],
        [True, True, True],
    ]


def test_masked_losses_match_hand_computation() -> None:
    # two sequences, three timesteps, two classes; the first sequence has one real output
    logits = torch.tensor(
        [
            [[0.0, 0.0], [float("nan"), 1.0], [5.0, 5.0]],
            [[math.log(3.0), 0.0], [0.0, 0.0], [0.0, math.log(3.0)]],
        ]
    )
    y = torch.tensor([[1, 0, 0], [0, 1, 1]])
    mask = timestep_mask(torch.tensor([1, 3]), 3)
    ce = timestep_losses(logits, y, mask, "cross_entropy")
    expected = [[math.log(2), 0, 0], [-math.log(0.75), math.log(2), -math.log(0.75)]]
    assert ce.flatten().tolist() == pytest.approx([v for row in expected for v in row])
    mse = timestep_losses(logits, y, mask, "mse")
    # softmax (0.5, 0.5) vs one-hot: 2 * 0.25; softmax (0.75, 0.25): 2 * 0.0625
    assert mse.flatten().tolist() == pytest.approx([0.5, 0, 0, 0.125, 0.5, 0.125])
    assert total_loss(ce).item() == pytest.approx(sum(map(sum, expected)) / 2)


def test_unknown_loss_rejected() -> None:
    with pytest.raises(ValueError, match="mse, cross_entropy"):
        timestep_losses(
            torch.zeros(1, 1, 2),
            torch.zeros(1, 1, dtype=torch.long),
            torch.ones(1, 1, dtype=torch.bool),
            "hinge",
        )


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_total_and_per_timestep_agree_with_direct_loops(tiny_spec, loss: str) -> None:
    spec = tiny_spec("captioning", "rnn", loss=loss)
    data = build_data(spec)
    torch.manual_seed(0)
    model = build_model(spec, data.dims).eval()
    report = evaluate(model, data.val, loss)
    split = data.val
    with torch.no_grad():
        logprobs = model(split.x, split.lengths, split.y).log_softmax(-1)
    per_step: dict[int, list[float]] = {}
    per_sequence = []
    for i in range(len(split)):
        values = []
        for t in range(int(split.y_len[i])):
            if loss == "cross_entropy":
                value = -logprobs[i, t, split.y[i, t]].item()
            else:
                one_hot = torch.nn.functional.one_hot(split.y[i, t], logprobs.shape[-1])
                value = (logprobs[i, t].exp() - one_hot).square().sum().item()
            values.append(value)
            per_step.setdefault(t, []).append(value)
        per_sequence.append(sum(values))
    assert report.total == pytest.approx(sum(per_sequence) / len(per_sequence), rel=1e-5)
    assert len(report.per_timestep) == split.steps == len(per_step)
    assert report.per_timestep == pytest.approx(
        [sum(v) / len(v) for _, v in sorted(per_step.items())], rel=1e-5
    )
    # L is the count-weighted sum of its L_t
    counts = [(split.y_len > t).sum().item() for t in range(split.steps)]
    weighted = sum(c * lt for c, lt in zip(counts, report.per_timestep, strict=True))
    assert report.total == pytest.approx(weighted / len(split), rel=1e-5)
