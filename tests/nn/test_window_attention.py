"""PrunableWindowAttention is the exact twin of torchvision's Swin window attention."""

import pytest
import torch
from torchvision.models import swin_transformer as swin

from slimtorch.nn import PrunableWindowAttention, build_module, module_config


@pytest.mark.parametrize("cls", [swin.ShiftedWindowAttention, swin.ShiftedWindowAttentionV2])
@pytest.mark.parametrize("shift", [[0, 0], [2, 2]])
@pytest.mark.parametrize("hw", [(8, 8), (9, 7)])  # (9, 7) is padded to whole windows
def test_twin_equals_torchvision(cls, shift, hw):
    torch.manual_seed(0)
    module = cls(32, [4, 4], shift, 4).eval()
    twin = PrunableWindowAttention.from_torch(module).eval()
    x = torch.randn(2, *hw, 32)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), module(x), rtol=0, atol=1e-6)


def test_config_rebuilds_the_architecture():
    twin = PrunableWindowAttention.from_torch(swin.ShiftedWindowAttentionV2(32, [4, 4], [2, 2], 4))
    again = build_module("PrunableWindowAttention", module_config(twin))
    assert {k: tuple(v.shape) for k, v in again.state_dict().items()} == {
        k: tuple(v.shape) for k, v in twin.state_dict().items()
    }
