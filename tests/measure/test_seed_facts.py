"""The first seed document's facts about grouped, depthwise-separable and dilated convs."""

import torch
from torch import nn

import slimtorch as st


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_grouped_conv_halves_parameters():
    grouped = nn.Conv2d(128, 256, 3, groups=2)
    plain = nn.Conv2d(128, 256, 3)
    assert grouped.weight.shape == (256, 64, 3, 3)
    assert grouped.weight.numel() * 2 == plain.weight.numel()
    x = torch.zeros(5, 128, 28, 28)
    rg, rp = st.analyze(grouped, x), st.analyze(plain, x)
    assert rg.params == 256 * 64 * 9 + 256
    assert rg.macs * 2 == rp.macs == 5 * 256 * 26 * 26 * 128 * 9


def test_depthwise_separable_against_standard_conv():
    h = w = 32
    x = torch.randn(1, 64, h, w)
    separable = nn.Sequential(nn.Conv2d(64, 64, 3, groups=64), nn.Conv2d(64, 128, 1))
    standard = nn.Conv2d(64, 128, 3)
    rs, rstd = st.analyze(separable, x), st.analyze(standard, x)
    out = (h - 2) * (w - 2)
    assert rs.params == (64 * 9 + 64) + (64 * 128 + 128)
    assert rstd.params == 64 * 128 * 9 + 128
    assert rs.macs == out * 64 * 9 + out * 64 * 128
    assert rstd.macs == out * 128 * 64 * 9
    # The ratio is 1/Cout + 1/k^2 (MobileNet's formula).
    assert abs(rs.macs / rstd.macs - (1 / 128 + 1 / 9)) < 1e-12


def test_dilated_conv_sees_5x5_with_9_weights():
    conv = nn.Conv2d(1, 1, 3, dilation=2, bias=False)
    report = st.analyze(conv, torch.randn(1, 1, 16, 16))
    assert report.params == 9
    assert report.receptive_field.size == (5, 5)
    assert report.layers[0].receptive_field.startswith("5x5")


def test_receptive_field_of_a_stack():
    # Two 3x3 convs -> 5x5; a stride-2 pool then another 3x3 -> 5 + 1 + 2 * 2 = 10.
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3))
    report = st.analyze(net, torch.randn(1, 1, 32, 32))
    assert report.receptive_field.size == (10, 10)
    assert report.receptive_field.jump == (2, 2)
