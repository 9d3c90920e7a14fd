import torch
import torchvision
from torch import nn

import slimtorch as st


def test_trace_records_ops_params_and_modules():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    g = st.trace(net, torch.randn(5, 4))
    assert [n.name for n in g.nodes] == ["t", "addmm", "relu", "t", "addmm"]
    assert [n.module for n in g.nodes] == ["0", "0", "1", "2", "2"]
    assert g.used_params == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert g.tensors[g.inputs[0]].shape == (5, 4)
    assert g.tensors[g.outputs[0]].shape == (5, 2)
    assert g.calls["2"].out_shapes == (5, 2)


def test_resnet50_trace_is_small_and_restores_mode():
    model = torchvision.models.resnet50().train()
    g = st.trace(model, torch.randn(1, 3, 64, 64))
    assert model.training  # traced in eval mode, flags restored
    kinds = g.op_kinds()
    # DESIGN: ~230 ops of ~10 kinds, so the rule registry stays small.
    assert 150 < len(g.nodes) < 300 and len(kinds) <= 12
    assert "aten.convolution" in kinds


def test_inplace_ops_make_new_values():
    class Inplace(nn.Module):
        def forward(self, x):
            y = x * 2
            y.add_(1)
            return y

    g = st.trace(Inplace(), torch.randn(3))
    mul, add = g.nodes
    assert add.inputs[0] == mul.outputs[0]
    assert add.outputs[0] != mul.outputs[0] and g.outputs == add.outputs
