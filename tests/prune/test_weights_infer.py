"""sparsify_for_inference: sparse layers give the dense outputs; the input model is untouched."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from slimtorch.errors import ConfigError
from slimtorch.prune.weights.api import prune_weights_
from slimtorch.prune.weights.sparse_infer import (
    SparseConv2d,
    SparseLinear,
    sparsify_for_inference,
)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3, stride=2, padding=2, dilation=2)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.conv1d = nn.Conv1d(16, 16, 1)
        self.fc = nn.Linear(16 * 25, 64)
        self.head = nn.Linear(64, 10, bias=False)

    def forward(self, x):
        y = self.dw(self.conv(x).relu())  # [B, 16, 5, 5]
        y = self.conv1d(y.flatten(2)).flatten(1)
        return self.head(self.fc(y).relu())


def _pruned():
    net = Net().eval()
    prune_weights_(net, 0.9)
    return net


@pytest.mark.parametrize("batch", [1, 3])
def test_swapped_model_matches_dense(batch):
    net = _pruned()
    x = torch.randn(batch, 8, 10, 10)
    with torch.no_grad():
        expected = net(x)
    result = sparsify_for_inference(net, x, threads=1, min_speedup=0, repeats=2, warmup=1)
    assert result.switched == ["conv", "fc", "head"]
    assert result.dense == ["dw", "conv1d"]
    notes = {r.name: r.note for r in result.layers}
    assert "groups=16" in notes["dw"] and notes["conv1d"] == "no sparse kernel for Conv1d"
    assert isinstance(result.model.fc, SparseLinear) and isinstance(result.model.conv, SparseConv2d)
    with torch.inference_mode():
        torch.testing.assert_close(result.model(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(result.model(torch.randn(2, 8, 10, 10)).shape, (2, 10))
    assert all(parametrize.is_parametrized(net.get_submodule(n)) for n in ("conv", "fc", "head"))
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, rtol=0, atol=0)  # input model untouched


def test_only_measured_wins_are_swapped():
    net = _pruned()
    x = torch.randn(1, 8, 10, 10)
    result = sparsify_for_inference(net, x, threads=1, min_speedup=float("inf"), repeats=3)
    assert result.switched == []
    timed = [r for r in result.layers if r.dense_ms is not None]
    assert [r.name for r in timed] == ["conv", "fc", "head"]
    assert all(r.dense_ms > 0 and r.sparse_ms > 0 for r in timed)
    text = str(result)
    assert "0 switched" in text and "below min_sparsity" not in text and "dense ms" in text
    dense = sparsify_for_inference(Net(), x, threads=1)
    assert dense.switched == []
    assert {r.note for r in dense.layers} == {
        "below min_sparsity=0.5",
        "no sparse kernel for Conv1d",
    }


def test_sparse_linear_on_3d_input_and_sparse_conv_limits():
    lin = nn.Linear(32, 24)
    with torch.no_grad():
        lin.weight[torch.rand(24, 32) < 0.8] = 0
    x = torch.randn(2, 5, 32)
    with torch.inference_mode():
        torch.testing.assert_close(SparseLinear.from_dense(lin)(x), lin(x))
    assert "nnz=" in repr(SparseLinear.from_dense(lin))
    with pytest.raises(ConfigError, match="groups=2"):
        SparseConv2d(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ConfigError, match="padding='same'"):
        SparseConv2d(nn.Conv2d(4, 4, 3, padding="same"))
