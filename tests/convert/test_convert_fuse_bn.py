import pytest
import torch
from torch import nn
from torch.testing import assert_close

import slimtorch as st
from slimtorch.convert import bn_pairs, convert
from slimtorch.errors import ConvertError


def _randomize_bn(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)
    return model.eval()


class Shared(nn.Module):
    """conv_a's output feeds its BN and a residual add: folding would change the add."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.bn_a = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv_b, self.bn_b = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.bn_c = nn.BatchNorm2d(4)  # fed by a ReLU, not a layer
        self.fc, self.bn_fc = nn.Linear(4 * 36, 8), nn.BatchNorm1d(8)

    def forward(self, x):
        a = self.conv_a(x)
        y = self.bn_a(a) + a
        y = self.bn_c(torch.relu(self.bn_b(self.conv_b(y))))
        return self.bn_fc(self.fc(y.flatten(1)))


def test_folds_only_exclusive_pairs_and_is_exact():
    model = _randomize_bn(Shared())
    x = torch.randn(3, 4, 6, 6)
    pairs, problems = bn_pairs(model, st.trace(model, x))
    assert pairs == {"conv_b": "bn_b", "fc": "bn_fc"}
    assert "also used by" in problems["bn_a"] and "bn_c" in problems
    result = convert(model, "fuse_bn", example_inputs=x)
    assert [r.name for r in result.layers] == ["conv_b", "fc"]
    assert {s.name for s in result.skipped} == {"bn_a", "bn_c"}
    new = result.model
    assert isinstance(new.bn_b, nn.Identity) and isinstance(new.bn_fc, nn.Identity)
    assert isinstance(new.bn_a, nn.BatchNorm2d) and new.conv_b.bias is not None
    with torch.no_grad():
        assert_close(new(x), model(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConvertError, match="cannot fold 'bn_a'.*also used by"):
        convert(model, "fuse_bn", ["bn_a"], x)


def test_resnet18_folds_every_bn_exactly():
    import torchvision

    model = _randomize_bn(torchvision.models.resnet18())
    x = torch.randn(1, 3, 64, 64)
    result = convert(model, "fuse_bn", example_inputs=x)
    assert len(result.layers) == 20 and not result.skipped
    assert not any(isinstance(m, nn.BatchNorm2d) for m in result.model.modules())
    with torch.no_grad():
        assert_close(result.model(x), model(x), rtol=1e-4, atol=1e-4)
    assert st.analyze(result.model, x).macs == st.analyze(model, x).macs
