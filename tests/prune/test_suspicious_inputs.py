"""Suspicious inputs warn or are refused, never acted on silently (issue 10)."""

import pytest
import torch
from torch import nn

import slimtorch as st
from slimtorch.errors import ConfigError


def _net():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(bad):
    net = _net()
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] = bad
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ConfigError, match="'0.weight' holds 1 NaN or infinite"):
        st.prune_channels(net, x, 0.5)
    with pytest.raises(ConfigError, match="'0.weight' holds 1 NaN or infinite"):
        st.prune_weights_(net, 0.5)
    assert not hasattr(net[0], "parametrizations")  # nothing was attached


def test_a_target_already_met_warns():
    net, x = _net(), torch.randn(1, 3, 8, 8)
    with pytest.warns(UserWarning, match="already met"):
        result = st.prune_channels(net, x, target_macs=10**12)
    assert any("already met" in w for w in result.warnings)
    assert result.model[0].out_channels == 8


def test_a_string_is_never_split_into_names():
    net, x = _net(), torch.randn(1, 3, 8, 8)
    with pytest.raises(ConfigError, match=r"ignore='0' is a string.*ignore=\['0'\]"):
        st.prune_channels(net, x, 0.5, ignore="0")
    with pytest.raises(ConfigError, match="pass a list"):
        st.prune_weights_(net, 0.5, ignore="0")
    kept = st.prune_channels(net, x, 0.5, ignore=["0"])
    assert kept.model[0].out_channels == 8
