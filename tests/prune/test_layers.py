"""prune_layers: blocks found, scored and physically removed; configs follow; bad input."""

import pytest
import torch
import torchvision
from torch import nn

import slimtorch as st
from slimtorch.graph.blocks import find_blocks
from slimtorch.graph.trace import trace
from slimtorch.train.models import digits_cnn, digits_resnet


def _resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def _zero_branch_(model, block):
    """A BasicBlock whose residual branch adds nothing: its output is relu(x) = x."""
    bn = model.get_submodule(block).bn2
    with torch.no_grad():
        bn.weight.zero_()
        bn.bias.zero_()
    return model


X = torch.randn(2, 3, 64, 64)
DATA = [torch.randn(4, 3, 64, 64) for _ in range(2)]


def test_finds_residual_blocks_of_resnet18():
    m = _resnet18()
    blocks = find_blocks(m, trace(m, X)).default
    # the first block of stages 2-4 downsamples (shapes differ); the others are removable
    assert [b.name for b in blocks] == ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]
    assert all(b.residual and b.same_shape for b in blocks)


@pytest.mark.parametrize("score", ["block_influence", "loss"])
def test_a_block_that_adds_nothing_goes_first_and_exactly(score, tmp_path):
    m = _zero_branch_(_resnet18(), "layer3.1")
    r = st.prune_layers(m, X, n=1, data=DATA, score=score)
    assert r.plan["layers"]["removed"] == ["layer3.1"]
    assert r.plan["layers"]["scores"]["layer3.1"] == pytest.approx(0.0, abs=1e-9)
    assert min(r.plan["layers"]["scores"].values()) == r.plan["layers"]["scores"]["layer3.1"]
    assert len(r.model.layer3) == 1 and "layer3.1" not in dict(r.model.named_modules())
    with torch.no_grad():
        torch.testing.assert_close(r.model(X), m(X), rtol=1e-5, atol=1e-6)
    gone = sum(p.numel() for p in m.layer3[1].parameters())
    assert r.before["params"] - r.after["params"] == gone
    assert r.after["macs"] < r.before["macs"]
    loaded = st.load(st.save(r, tmp_path / "m.slim"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(X), r.model(X), rtol=0, atol=0)
    assert "1/5 blocks removed (layer3.1)" in str(r)


def test_n_blocks_removed_and_input_untouched():
    m = _resnet18()
    n_before = len(list(m.modules()))
    r = st.prune_layers(m, X, n=3, data=DATA)
    assert len(r.plan["layers"]["removed"]) == 3
    assert sum(len(getattr(r.model, f"layer{i}")) for i in range(1, 5)) == 5
    assert len(list(m.modules())) == n_before  # the input model is not modified
    assert [e["op"] for e in r.plan["edits"]] == ["remove"] * 3


def test_angular_removes_consecutive_blocks():
    m = _zero_branch_(_zero_branch_(_resnet18(), "layer1.0"), "layer1.1")
    r = st.prune_layers(m, X, n=2, data=DATA, score="angular")
    assert sorted(r.plan["layers"]["removed"]) == ["layer1.0", "layer1.1"]
    assert r.plan["layers"]["scores"]["layer1.0+layer1.1"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(st.PruneError, match="consecutive"):
        st.prune_layers(m, X, n=3, data=DATA, score="angular")  # runs are at most 2 long


def test_target_macs_removes_the_fewest_blocks():
    m = _resnet18()
    base = st.analyze(m, X).macs
    r = st.prune_layers(m, X, target_macs=int(base * 0.8), data=DATA)
    k = len(r.plan["layers"]["removed"])
    assert r.after["macs"] <= base * 0.8
    assert r.after["macs"] == st.analyze(r.model, X).macs
    fewer = st.prune_layers(m, X, n=k - 1, data=DATA) if k > 1 else None
    assert fewer is None or fewer.after["macs"] > base * 0.8


def test_hugging_face_layers_config_and_layer_idx(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, vocab_size=100,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config).eval()
    ids = {"input_ids": torch.randint(0, 100, (2, 12))}
    r = st.prune_layers(model, ids, blocks=["model.layers.1", "model.layers.2"])
    assert r.model.config.num_hidden_layers == 2 and len(r.model.model.layers) == 2
    assert [layer.self_attn.layer_idx for layer in r.model.model.layers] == [0, 1]
    out = r.model(**ids).logits
    loaded = st.load(st.save(r, tmp_path / "m.slim"))
    torch.testing.assert_close(loaded(**ids).logits, out, rtol=0, atol=0)
    # a causal LM saved as a model stays one (not its .model body)
    assert type(st.load(st.save(r.model, tmp_path / "lm.slim"))) is type(r.model)
    r.model.save_pretrained(tmp_path / "hf")
    again = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    torch.testing.assert_close(again(**ids).logits, out, rtol=0, atol=0)
    # the KV cache indexes layers by layer_idx: generation runs on the shallower model
    assert r.model.generate(ids["input_ids"][:1], max_new_tokens=2, do_sample=False).shape[1] == 14


def test_plain_cnn_layers_and_a_fitted_projection(tmp_path):
    torch.manual_seed(0)
    m = st.load_model("slimtorch.train.models:digits_cnn").eval()
    x, data = torch.randn(2, 1, 8, 8), [torch.randn(64, 1, 8, 8)]
    blocks = find_blocks(m, trace(m, x))
    assert [b.name for b in blocks.default] == ["7..9"]  # conv + BN + ReLU, 64 -> 64
    # a conv that widens 32 -> 64 is replaced by a 1x1 conv fitted on the data
    r = st.prune_layers(m, x, blocks=["3..5"], data=data)
    assert isinstance(r.model[3], nn.Conv2d) and r.model[3].kernel_size == (1, 1)
    assert "4" not in r.model._modules and "5" not in r.model._modules
    assert r.plan["layers"]["projections"]["3..5"]["fit_error"] < 1.0
    loaded = st.load(st.save(r, tmp_path / "m.slim"), trust_code=True)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), r.model(x), rtol=0, atol=0)


def test_projection_fit_is_exact_for_a_linear_block():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 32), nn.Linear(32, 10)).eval()
    x = torch.randn(256, 8)
    r = st.prune_layers(m, x[:2], blocks=["2"], data=[x])
    assert r.plan["layers"]["projections"]["2"]["fit_error"] < 1e-3
    with torch.no_grad():
        torch.testing.assert_close(r.model(x), m(x), rtol=1e-3, atol=1e-3)


def test_bad_input():
    m = _resnet18()
    with pytest.raises(st.PruneError, match="at most 5"):
        st.prune_layers(m, X, n=6, data=DATA)
    with pytest.raises(st.PruneError, match="cannot be reached by removing blocks"):
        st.prune_layers(m, X, target_macs=1000, data=DATA)
    with pytest.raises(st.InputError, match="calibration data"):
        st.prune_layers(m, X, n=1)
    with pytest.raises(st.ConfigError, match="score="):
        st.prune_layers(m, X, n=1, data=DATA, score="cosine")
    with pytest.raises(st.ConfigError, match="say how deep"):
        st.prune_layers(m, X, data=DATA)
    with pytest.raises(st.ConfigError, match="give one of"):
        st.prune_layers(m, X, n=1, speedup=2.0, data=DATA)
    with pytest.raises(st.ConfigError, match="layer9"):
        st.prune_layers(m, X, blocks=["layer9"], data=DATA)
    with pytest.raises(st.PruneError, match="one inside the other"):
        st.prune_layers(m, X, blocks=["layer1", "layer1.0"], data=DATA)
    with pytest.raises(st.PruneError, match="no removable block"):
        st.prune_layers(nn.Linear(4, 2), torch.randn(1, 4), n=1, data=[torch.randn(3, 4)])
    cnn = digits_cnn().eval()
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(st.PruneError, match="cannot be made shape-safe"):
        st.prune_layers(cnn, x, blocks=["10"], data=[x])  # Flatten: 4-D -> 2-D


def test_latency_target_out_of_reach():
    m = _resnet18()
    with pytest.raises(st.PruneError, match="speedup=1000 cannot be reached"):
        st.prune_layers(m, X[:1], speedup=1000.0, data=DATA)


def test_restore_receptive_field_dilates_the_next_block(tmp_path):
    model = digits_resnet(width=8).eval()
    x = torch.randn(4, 1, 8, 8)
    base = st.analyze(model, x[:1]).receptive_field.size
    cut = st.prune_layers(model, x, blocks=["1.4"])
    kept = st.prune_layers(model, x, blocks=["1.4"], restore_receptive_field=True)
    # stage 1 runs at stride 2: one block of two 3x3 convs took 2 * 2 * 2 pixels
    assert st.analyze(cut.model, x[:1]).receptive_field.size == (base[0] - 8, base[1] - 8)
    assert st.analyze(kept.model, x[:1]).receptive_field.size == base
    assert kept.plan["layers"]["dilated"] == {"1.5.conv1": [2, 2], "1.5.conv2": [2, 2]}
    assert kept.model.get_submodule("1.5.conv1").padding == (2, 2)  # shapes kept
    path = tmp_path / "rf.slim"
    st.save(kept, path, spec="slimtorch.train.models:digits_resnet", spec_kwargs={"width": 8})
    torch.testing.assert_close(st.load(path, trust_code=True)(x), kept.model(x))
