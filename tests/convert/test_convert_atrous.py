"""dilate_to_restore: removing a stride and dilating what follows keeps outputs on ::f."""

import pytest
import torch
import torchvision
from torch import nn
from torch.testing import assert_close

import slimtorch as st
from slimtorch.convert import dilate_to_restore
from slimtorch.edit import edits_of
from slimtorch.errors import ConvertError


def test_sequential_retained_positions_are_exact():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 5, padding=2),
        nn.Conv2d(16, 16, 3, stride=2, padding=1),  # a later stride stays
        nn.Conv2d(16, 4, 1),
    ).eval()
    x = torch.randn(2, 3, 23, 23)
    dense = dilate_to_restore(model, "2", x)
    assert dense[2].stride == (1, 1) and dense[5].dilation == (2, 2) and dense[5].padding == (4, 4)
    assert dense[6].stride == (2, 2) and dense[6].dilation == (2, 2)
    with torch.no_grad():
        old, new = model(x), dense(x)
    assert new.shape[-1] > old.shape[-1]
    assert_close(new[..., ::2, ::2][..., : old.shape[-2], : old.shape[-1]], old)
    assert [e["module"] for e in edits_of(dense)] == ["2", "5", "6", "7"]
    assert edits_of(model) == []


def test_resnet18_layer4_a_trous_keeps_features_and_receptive_field():
    body = nn.Sequential(*list(torchvision.models.resnet18().children())[:-2]).eval()
    x = torch.randn(1, 3, 64, 64)
    dense = dilate_to_restore(body, ["7.0.conv1", "7.0.downsample.0"], x)
    with torch.no_grad():
        old, new = body(x), dense(x)
    assert old.shape[-1] == 2 and new.shape[-1] == 4
    assert_close(new[..., ::2, ::2], old, rtol=1e-4, atol=1e-4)
    rf_old = st.analyze(body, x).receptive_field
    rf_new = st.analyze(dense, x).receptive_field
    assert rf_new.size == rf_old.size and rf_new.jump[0] * 2 == rf_old.jump[0]
    st.trace(dense, x)


def test_missing_parallel_branch_is_named():
    body = nn.Sequential(*list(torchvision.models.resnet18().children())[:-2]).eval()
    with pytest.raises(ConvertError, match="downsample"):
        dilate_to_restore(body, "7.0.conv1", torch.randn(1, 3, 64, 64))
