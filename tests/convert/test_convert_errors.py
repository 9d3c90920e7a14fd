"""Bad input gives our exceptions, naming the bad value and the fix."""

import pytest
import torch
from torch import nn

from slimtorch.convert import convert, dilate_to_restore
from slimtorch.errors import ConfigError, ConvertError


@pytest.fixture
def net():
    return nn.Sequential(
        nn.Conv2d(3, 10, 3, padding=1), nn.ReLU(), nn.Conv2d(10, 8, 3), nn.Flatten()
    ).eval()


X = torch.randn(1, 3, 8, 8)


def test_groups_not_dividing_channels(net):
    with pytest.raises(ConvertError, match=r"in_channels=3 and out_channels=10.*groups=2"):
        convert(net, "grouped", ["0"], X, groups=2)
    with pytest.raises(ConvertError, match=r"groups=4.*use groups in \[2\]"):
        convert(net, "grouped", ["2"], X, groups=4)
    # Without a layer list, such layers are reported as skipped, with the same reason.
    result = convert(net, "grouped", example_inputs=X, groups=2)
    assert [r.name for r in result.layers] == ["2"]
    assert [s.name for s in result.skipped] == ["0"] and "divisible" in result.skipped[0].reason


def test_kernel_too_small_for_dilated(net):
    with pytest.raises(ConvertError, match=r"kernel_size \(3, 3\), too small.*odd kernel >= 5"):
        convert(net, "dilated", ["0"], X)


def test_rank_larger_than_possible(net):
    with pytest.raises(ConfigError, match=r"rank=10 is larger than possible.*at most 9"):
        convert(net, "depthwise_separable", ["0"], X, rank=10)
    with pytest.raises(ConfigError, match=r"rank=9 is larger.*'2'.*at most 8"):
        convert(net, "low_rank", ["2"], X, rank=9)
    with pytest.raises(ConfigError, match=r"rank=0 is invalid.*'full'"):
        convert(net, "low_rank", rank=0)


def test_unknown_layer_suggests_close_names():
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)))
    with pytest.raises(ConfigError, match=r"'feature.1' does not exist.*did you mean features.1"):
        convert(model, "low_rank", ["feature.1"], rank=1)


def test_unknown_kind_and_option(net):
    with pytest.raises(ConfigError, match=r"unknown conversion kind 'lowrank'.*'low_rank'"):
        convert(net, "lowrank", rank=1)
    with pytest.raises(ConfigError, match=r"option rnak=2 is unknown.*did you mean rank"):
        convert(net, "depthwise_separable", rnak=2)
    with pytest.raises(ConfigError, match="pass exactly one"):
        convert(net, "low_rank")
    with pytest.raises(ConfigError, match="energy=1.5 is invalid"):
        convert(net, "low_rank", energy=1.5)


def test_missing_inputs_and_bad_layers_argument(net):
    with pytest.raises(ConfigError, match=r"kind 'fuse_bn'.*need\(s\) example_inputs"):
        convert(net, "fuse_bn")
    with pytest.raises(ConfigError, match=r"layers='auto'.*example_inputs"):
        convert(net, "low_rank", "auto", rank=1)
    with pytest.raises(ConfigError, match=r"layers='0' is invalid.*\['conv1'\]"):
        convert(net, "low_rank", "0", rank=1)
    with pytest.raises(ConvertError, match=r"'1' is a ReLU.*rewrites \['Conv2d', 'Linear'\]"):
        convert(net, "low_rank", ["1"], rank=1)


def test_dilate_to_restore_errors(net):
    with pytest.raises(ConvertError, match="'2' .* is not a strided conv"):
        dilate_to_restore(net, "2", X)
    with pytest.raises(ConfigError, match="'conv' does not exist"):
        dilate_to_restore(net, "conv", X)
