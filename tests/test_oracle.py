"""The oracle can fail: ``_oracle.check_pruned`` rejects a broken pruned model (exact and
inexact groups), a model that was not pruned or too little, and an output that does not
depend on the input; it accepts the honest pruned models next to them."""

import pytest
import torch
from torch import nn

import _oracle
import _zoo
import slimtorch as st
from _oracle import check_pruned


def _cnn():
    """Exact groups only: conv -> BN -> ReLU twice, pooled, a linear head."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    ).eval()


def _layer_norm_mlp():
    """One inexact group (the first linear's outputs go through a LayerNorm) and one exact."""
    return nn.Sequential(
        nn.Linear(16, 64),
        nn.LayerNorm(64),
        nn.Linear(64, 128),
        nn.GELU(),
        nn.Linear(128, 10),
    ).eval()


@pytest.fixture
def cnn_case():
    model, x = _cnn(), torch.randn(2, 3, 16, 16)
    return model, st.prune_channels(model, x, ratio=0.5), x


@pytest.fixture
def inexact_case():
    model, x = _layer_norm_mlp(), torch.randn(2, 16)
    result = st.prune_channels(model, x, ratio=0.5)
    assert [g["exact"] for g in result.plan["groups"] if g["removed"]] == [False, True]
    return model, result, x


def _swap_rows_(weight, i=0, j=1):
    with torch.no_grad():
        weight[[i, j]] = weight[[j, i]]


def _roll_rows_(weight):
    """Every kept channel moves to the next position."""
    with torch.no_grad():
        weight.copy_(weight.roll(1, 0))


def test_exact_path_accepts_the_pruned_model(cnn_case):
    check_pruned(*cnn_case)


@pytest.mark.parametrize(
    "break_",
    [
        pytest.param(lambda m: _swap_rows_(m[3].weight), id="kept channels shuffled"),
        pytest.param(lambda m: _swap_rows_(m[0].weight.transpose(0, 1)), id="input permuted"),
        pytest.param(lambda m: m[3].weight[5].mul_(1.01), id="one filter 1% off"),
        pytest.param(lambda m: m[4].running_var[3].add_(0.01), id="one BN stat 1% off"),
    ],
)
def test_exact_path_rejects_a_broken_model(cnn_case, break_):
    model, result, x = cnn_case
    with torch.no_grad():
        break_(result.model)
    with pytest.raises(AssertionError, match="exact groups, but the output differs"):
        check_pruned(model, result, x)


def test_inexact_path_accepts_within_the_bound(inexact_case):
    model, result, x = inexact_case
    err = _oracle.oracle_errors(model, result, x)["rel_err"]
    assert 0.01 < err <= _oracle.INEXACT_REL_ERR  # inexact indeed, and within the bound
    check_pruned(model, result, x)


@pytest.mark.parametrize(
    "break_",
    [
        pytest.param(lambda m: _swap_rows_(m[2].weight.transpose(0, 1), 0, 5), id="LN out"),
        pytest.param(lambda m: _roll_rows_(m[2].weight), id="kept channels shuffled"),
        pytest.param(lambda m: _roll_rows_(m[0].weight), id="LN in shuffled"),
        pytest.param(lambda m: m[1].weight.mul_(-1.0), id="LN scale negated"),
    ],
)
def test_inexact_path_rejects_a_broken_model(inexact_case, break_):
    model, result, x = inexact_case
    with torch.no_grad():
        break_(result.model)
    with pytest.raises(AssertionError, match=r"inexact group\(s\); relative error"):
        check_pruned(model, result, x)


def test_a_model_that_was_not_pruned_is_rejected():
    model, x = _cnn(), torch.randn(2, 3, 16, 16)
    result = st.prune_channels(model, x, ratio=0.0)
    with pytest.raises(AssertionError, match="nothing was pruned"):
        check_pruned(model, result, x)


def test_too_few_macs_removed_is_rejected_unless_exempt(monkeypatch):
    model, x = _cnn(), torch.randn(2, 3, 16, 16)
    result = st.prune_channels(model, x, ratio=0.1, round_to=None)
    ratio = result.after["macs"] / result.before["macs"]
    assert _oracle.MAX_MAC_RATIO < ratio < 1
    with pytest.raises(AssertionError, match=f"toy: keeps {ratio:.1%} of its MACs"):
        check_pruned(model, result, x, name="toy")
    monkeypatch.setitem(_zoo.MAC_EXEMPT, "toy", "a test of the exemption")
    check_pruned(model, result, x, name="toy")


@pytest.mark.parametrize("head", ["zero", "bias only"])
def test_an_output_that_ignores_the_input_is_rejected(head):
    model, x = _cnn(), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        model[-1].weight.zero_()  # timm Mixer's and torchvision ViT's heads at init
        if head == "zero":
            model[-1].bias.zero_()
    result = st.prune_channels(model, x, ratio=0.5)
    with torch.no_grad():
        result.model[3].weight.zero_()  # any model would pass
    with pytest.raises(AssertionError, match="does not depend on the input"):
        check_pruned(model, result, x)


def test_one_input_is_not_enough(cnn_case):
    model, result, x = cnn_case
    with pytest.raises(AssertionError, match="batch of at least 2"):
        check_pruned(model, result, x[:1])
