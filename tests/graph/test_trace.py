import pytest
import torch
import torchvision
from torch import nn

import slimtorch as st
from _zoo import torchvision_families


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


FAMILIES = sorted(torchvision_families(torchvision.models.list_models(module=torchvision.models)))


@pytest.mark.parametrize("family", FAMILIES)
def test_meta_trace_records_what_a_real_one_does(family):
    """The meta trace's shortcuts (batch norm, pointwise ops) leave every module's input and
    output shapes and the model's outputs as the real forward has them, one model per
    torchvision family. (Op lists differ where meta kernels differ: CPU flash attention.)"""
    name = torchvision_families(torchvision.models.list_models(module=torchvision.models))[family]
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, **({"image_size": 64} if name[:4] == "vit_" else {}))
    size = 224 if name.startswith("maxvit") else 96 if name.startswith("inception") else 64
    x = torch.randn(1, 3, size, size)
    real, meta = (st.trace(model, x, grad=True, meta=m) for m in (False, True))
    shapes = {n: (c.in_shapes, c.out_shapes) for n, c in real.calls.items()}
    assert {n: (c.in_shapes, c.out_shapes) for n, c in meta.calls.items()} == shapes
    assert len(shapes) > 10
    assert [meta.tensors[t].shape for t in meta.outputs] == [
        real.tensors[t].shape for t in real.outputs
    ]


def test_meta_shortcut_keeps_in_place_identity_and_skips_other_dtypes():
    from slimtorch.graph._meta import meta_shortcut as _meta_shortcut

    x = torch.empty(2, 3, device="meta")
    aten = torch.ops.aten
    assert _meta_shortcut(aten.relu_.default, (x,), {}) is x
    y = _meta_shortcut(aten.add.Tensor, (x, x), {"alpha": 2})
    assert y.shape == x.shape and y.dtype == x.dtype and y is not x
    assert _meta_shortcut(aten.eq.Tensor, (x, x), {}) is None  # bool result
    assert _meta_shortcut(aten.add.Tensor, (x, torch.empty(3, device="meta")), {}) is None
    assert _meta_shortcut(aten.relu.default, (x.long(),), {}) is None
    assert _meta_shortcut(aten.clone.default, (x,), {"memory_format": None}) is None


def test_meta_trace_restores_a_module_shared_under_two_names():
    """timm's CoaT registers one ConvPosEnc under two names; a meta trace must leave every
    parameter of it on its device (functional_call left meta tensors behind)."""
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    model.alias = shared
    st.trace(model, torch.randn(2, 4), meta=True)
    assert all(not p.is_meta for p in model.parameters())
    assert all(not p.is_meta for m in model.modules() for p in m._parameters.values())


def test_needs_grad_only_where_a_fused_no_grad_path_would_hide_the_projections():
    from slimtorch.graph.trace import needs_grad, trace

    attn = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True).eval()
    assert needs_grad(attn) and not needs_grad(torchvision.models.mobilenet_v2())
    x = torch.randn(2, 5, 16)
    with torch.no_grad():  # without autograd the encoder layer runs one fused kernel
        fused = {n.name for n in trace(attn, x, meta=False).nodes}
    unfused = {n.name for n in trace(attn, x, grad=needs_grad(attn), meta=True).nodes}
    kernels = {"_native_multi_head_attention", "_transformer_encoder_layer_fwd"}
    assert fused & kernels
    assert not unfused & kernels and "addmm" in unfused


def test_a_failed_trace_names_the_module_and_its_keyword_inputs():
    from slimtorch.errors import ForwardError
    from slimtorch.graph.trace import trace

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x, mask=None):
            return self.lin(x) + mask

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Inner()

        def forward(self, x):
            return self.inner(x, mask=torch.ones(3))

    with pytest.raises(ForwardError, match=r"module 'inner' \(Inner\) with input shapes "
                       r"\(\(2, 4\),\) and \{'mask': \(3,\)\}"):  # fmt: skip
        trace(Outer(), torch.randn(2, 4), meta=True)
