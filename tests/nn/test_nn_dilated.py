import pytest
import torch
from torch import nn

import slimtorch as st
from slimtorch.errors import ConfigError
from slimtorch.nn import (
    dilated_conv2d,
    dilation_to_cover,
    effective_kernel_size,
    receptive_field_gain,
    same_padding,
)


@pytest.mark.parametrize("k,d", [(3, 1), (3, 2), (3, 5), (5, 2), (7, 3), (2, 2)])
def test_same_padding_keeps_the_size(k, d):
    conv = nn.Conv2d(2, 2, k, padding=same_padding(k, d), dilation=d)
    assert conv(torch.randn(1, 2, 13, 11)).shape[-2:] == (13, 11)
    assert effective_kernel_size(k, d) == (k - 1) * d + 1


def test_same_padding_rejects_even_spans():
    with pytest.raises(ConfigError, match="spans 4 pixels, an even number"):
        same_padding(4, 1)


def test_receptive_field_gain_matches_analyze():
    net = nn.Sequential(
        dilated_conv2d(1, 4, 3, dilation=1),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        dilated_conv2d(4, 4, 3, dilation=2),
        dilated_conv2d(4, 4, 5, dilation=3),
    )
    rf = st.analyze(net, torch.randn(1, 1, 64, 64)).receptive_field
    gains = [
        receptive_field_gain(3, 1, jump=1),
        receptive_field_gain(3, 1, jump=1),
        receptive_field_gain(3, 2, jump=2),
        receptive_field_gain(5, 3, jump=2),
    ]
    assert rf.size == (1 + sum(gains),) * 2


def test_dilation_to_cover():
    assert dilation_to_cover(3, 7) == 3 and dilation_to_cover(3, 5) == 2
    assert effective_kernel_size(3, dilation_to_cover(3, 9)) == 9
    with pytest.raises(ConfigError, match="cannot span exactly 6"):
        dilation_to_cover(3, 6)
