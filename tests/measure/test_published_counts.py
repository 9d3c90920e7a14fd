"""Oracle 2: params and MACs of every torchvision classifier match torchvision's published meta."""

import pytest
import torch
import torchvision

import slimtorch as st

NAMES = torchvision.models.list_models(module=torchvision.models)
SLOW = {"regnet_y_128gf", "regnet_y_32gf", "regnet_x_32gf", "regnet_y_16gf", "regnet_x_16gf"}
# torchvision's published num_params for Inception-v3 includes the auxiliary classifier, which
# its eval-mode forward never runs; GoogLeNet's figure leaves its auxiliary heads out.
COUNTS_UNUSED = {"inception_v3": "AuxLogits."}


def _first_weights(name):
    return list(torchvision.models.get_model_weights(name))[0]


def _build_on_meta(name, **kwargs):
    try:
        with torch.device("meta"):
            return torchvision.models.get_model(name, **kwargs)
    except NotImplementedError:  # builders that compute widths with real tensors (RegNet)
        return torchvision.models.get_model(name, **kwargs).to("meta")


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NAMES]
)
def test_params_and_macs_match_torchvision_meta(name):
    weights = _first_weights(name)
    crop = weights.transforms().crop_size
    kwargs = {"image_size": crop[0]} if name.startswith("vit_") else {}
    model = _build_on_meta(name, **kwargs)
    report = st.analyze(model, torch.randn(1, 3, crop[0], crop[-1], device="meta"))

    if name in COUNTS_UNUSED:
        assert report.unused and all(n.startswith(COUNTS_UNUSED[name]) for n in report.unused)
        assert report.params + report.unused_params == weights.meta["num_params"]
    else:
        assert report.params == weights.meta["num_params"]
    published = weights.meta["_ops"] * 1e9
    # _ops is published with 3 decimals (in GFLOPs), so small models also get half a unit.
    assert abs(report.macs - published) <= max(0.01 * published, 0.0005e9)


def test_googlenet_aux_heads_reported_apart():
    model = torchvision.models.googlenet(aux_logits=True, init_weights=False)
    report = st.analyze(model, torch.randn(1, 3, 224, 224))
    aux = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("aux1", "aux2")))
    assert report.unused_params == aux > 0
    assert report.params + report.unused_params == sum(p.numel() for p in model.parameters())
    assert all(n.startswith(("aux1.", "aux2.")) for n in report.unused)


def test_fused_attention_counted_like_unfused():
    # Eval mode without autograd takes aten._native_multi_head_attention, hiding the
    # projections; both paths must give the same MACs and match the formula.
    e, heads, seq, batch = 64, 4, 10, 2
    mha = torch.nn.MultiheadAttention(e, heads, batch_first=True).eval()
    x = torch.randn(batch, seq, e)

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = mha

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    fused = st.analyze(Wrap(), x)
    graph = st.trace(Wrap(), x)
    assert "aten._native_multi_head_attention" in graph.op_kinds()
    expected = batch * (4 * seq * e * e + 2 * seq * seq * e)
    assert fused.macs == expected
    for p in mha.parameters():
        p.requires_grad_(True)
    unfused_graph = st.trace(Wrap(), x, grad=True)
    assert "aten._native_multi_head_attention" not in unfused_graph.op_kinds()
    from slimtorch.measure.analyze import count_macs

    assert sum(count_macs(unfused_graph).values()) == expected
