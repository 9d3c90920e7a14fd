"""Every kind of edit saves to ``.slim`` and reloads to identical outputs, and so does a chain.

The edit layer records each structural change; loading rebuilds the architecture from the spec,
replays the log (structure first, then the weights, then the sparse swaps) and must give the
same outputs bit for bit, the same module types and the same log.
"""

import copy

import pytest
import torch
from torch import nn

import slimtorch as st
from slimtorch.edit import edits_of, remove_module_, replace_module_
from slimtorch.nn.sparse import SparseLinear

SPEC = "_models:small_cnn"
X = torch.randn(2, 3, 16, 16)


def base():
    model = st.load_model(SPEC)
    return model


def reload(model, tmp_path):
    path = st.save(model, tmp_path / "m.slim")
    loaded = st.load(path, trust_code=True)
    with torch.no_grad():
        torch.testing.assert_close(loaded(X), model.eval()(X), rtol=0, atol=0)
    plain = copy.deepcopy(model)
    st.make_permanent_(plain)  # masks are stored as the zeros they made, not as masks
    assert [type(m).__name__ for m in loaded.modules()] == [
        type(m).__name__ for m in plain.modules()
    ]
    assert edits_of(loaded) == edits_of(model)
    return loaded


def test_prune_channels(tmp_path):
    r = st.prune_channels(base(), X, 0.5, round_to=None)
    assert [e["op"] for e in edits_of(r.model)] == ["prune"]
    loaded = reload(r.model, tmp_path)
    assert loaded[3].out_channels == 16


@pytest.mark.parametrize(
    ("kind", "options", "changed"),
    [
        ("depthwise_separable", {"rank": 2}, "DepthwiseSeparableConv2d"),
        ("grouped", {"groups": 2}, "GroupedConv2d"),
        ("dilated", {}, "Conv2d"),
        ("low_rank", {"rank": 0.5}, "LowRankLinear"),
        ("fuse_bn", {}, "Identity"),
    ],
)
def test_convert(tmp_path, kind, options, changed):
    r = st.convert(base(), kind, example_inputs=X, **options)
    edits = edits_of(r.model)
    assert edits and all(e["op"] == "replace" and e["why"]["kind"] == kind for e in edits)
    assert changed in {e["type"] for e in edits}
    reload(r.model, tmp_path)


def test_prune_weights_masks(tmp_path):
    model = base()
    st.prune_weights_(model, 0.7, ignore=["10"])
    assert edits_of(model)[-1] == {"op": "prune_weights", "options": edits_of(model)[-1]["options"]}
    loaded = reload(model, tmp_path)
    assert st.sparsity(loaded)["8"] == pytest.approx(0.7, abs=0.01)


def test_sparsify(tmp_path):
    model = base()
    st.prune_weights_(model, 0.9, ignore=["0", "3"])
    r = st.sparsify_for_inference(model, X, threads=1, min_speedup=0)
    assert {"8", "10"} <= set(r.switched)
    loaded = reload(r.model, tmp_path)
    assert isinstance(loaded[8], SparseLinear) and isinstance(loaded[10], SparseLinear)


def test_replace_and_remove_a_module(tmp_path):
    model = base()
    replace_module_(model, "2", nn.ReLU(inplace=True))
    remove_module_(model, "9")  # the ReLU between the two Linear layers
    assert [e["type"] for e in edits_of(model)] == ["ReLU", "Identity"]
    reload(model, tmp_path)


def test_chain_convert_then_prune_then_sparsify(tmp_path):
    converted = st.convert(base(), "fuse_bn", example_inputs=X).model
    converted = st.convert(converted, "depthwise_separable", ["3"], X, rank=2).model
    pruned = st.prune_channels(converted, X, 0.5, round_to=None).model
    st.prune_weights_(pruned, 0.9, ignore=["0"])
    final = st.sparsify_for_inference(pruned, X, threads=1, min_speedup=0).model
    ops = [e["op"] for e in edits_of(final)]
    assert ops[:3] == ["replace"] * 3 and "prune" in ops and ops[-1] == "sparsify"
    assert ops.index("prune") < ops.index("prune_weights") < ops.index("sparsify")
    loaded = reload(final, tmp_path)
    assert type(loaded[3]).__name__ == "DepthwiseSeparableConv2d"
    assert isinstance(loaded[10], SparseLinear)
    assert loaded[8].out_features < 64  # channels removed after the conversions


def test_weight_norm_is_folded_pruned_and_reloads(tmp_path):
    model = st.load_model("_models:weight_norm_cnn")
    model(X)  # the hook API caches a non-leaf weight, which plain deepcopy refuses
    r = st.prune_channels(model, X, 0.5, round_to=None)
    assert [e["op"] for e in edits_of(r.model)] == ["fold", "prune"]
    assert edits_of(r.model)[0]["tensors"] == ["0.weight", "2.weight"]
    assert any("folded the reparametrized weights of 2 tensors" in w for w in r.warnings)
    assert (r.model[0].out_channels, r.model[2].out_channels) == (8, 8)
    assert not hasattr(r.model[0], "parametrizations")
    with torch.no_grad():  # folding keeps the function: at ratio 0 nothing changes
        r0 = st.prune_channels(model, X, 0.0)
        torch.testing.assert_close(r0.model(X), model(X), rtol=0, atol=1e-6)
    assert hasattr(model[0], "parametrizations")  # the user's model is left as it was
    model(X)
    assert hasattr(model[0], "parametrizations")  # the user's model is left as it was
    model(X)
    reload(r.model, tmp_path)
