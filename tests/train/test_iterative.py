"""IterativePruning: MACs fall cycle by cycle to the target; importance is re-scored."""

import itertools

import pytest
import torch

from slimtorch.errors import ConfigError
from slimtorch.train import accuracy, digits, finetune
from slimtorch.train.iterative import IterativePruning
from slimtorch.train.models import digits_cnn

X = torch.zeros(1, 1, 8, 8)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    return finetune(digits_cnn(width=32), digits("train"), epochs=1, lr=3e-3, progress=False)


@pytest.mark.slow  # ~25 s: trains a teacher, then five prune -> fine-tune cycles
def test_macs_fall_monotonically_to_the_target(trained):
    schedule = IterativePruning(
        macs=0.5, steps=5, train_steps=6, round_to=None, finetune={"lr": 2e-3, "progress": False}
    )
    test = digits("test")
    r = schedule.run(trained.model, X, digits("train"), eval_fn=lambda m: accuracy(m, test))
    macs = [c["macs"] for c in r.cycles]
    start = macs[0]
    assert [c["cycle"] for c in r.cycles] == list(range(6))
    assert all(a > b for a, b in itertools.pairwise(macs)), macs
    assert macs[-1] <= 0.5 * start * 1.02  # the goal, within channel-rounding slack
    for c in r.cycles[1:]:
        assert c["macs"] <= c["target_macs"] * 1.05  # each cycle meets its own target
    assert r.cycles[-1]["eval"] > 0.5  # still a classifier (chance: 0.1) after 6 steps a cycle
    assert "cycle" in r.summary() and r.model is not trained.model


def test_weights_follow_agp():
    schedule = IterativePruning(
        macs=0.25, steps=2, train_steps=2, sparsity=0.5, distill=False, round_to=None,
        finetune={"progress": False},
    )  # fmt: skip
    r = schedule.run(digits_cnn(width=32), X, digits("train"))
    levels = [round(c["sparsity"], 2) for c in r.cycles]
    # AGP over 2 cycles: 1 - (1 - 1/2)^3 = 87.5% of the final sparsity, then all of it.
    assert levels[0] == 0.0
    assert levels[1] == pytest.approx(0.4375, abs=0.02) and levels[2] == pytest.approx(
        0.5, abs=0.02
    )


def test_options_are_checked():
    with pytest.raises(ConfigError, match="got both epochs= and train_steps="):
        IterativePruning(epochs=1, train_steps=5)
    assert IterativePruning().epochs == 1
    with pytest.raises(ConfigError, match="macs=1.0 is outside"):
        IterativePruning(macs=1.0)
    with pytest.raises(ConfigError, match=r"finetune= holds \['epochs'\]"):
        IterativePruning(finetune={"epochs": 2})
    assert IterativePruning(macs=0.5, steps=5).targets(1000) == [900, 800, 700, 600, 500]
