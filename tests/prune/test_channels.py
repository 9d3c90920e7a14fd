import json

import pytest
import torch
import torchvision
from torch import nn

import slimtorch as st
from _oracle import check_pruned, oracle_errors


@pytest.fixture(scope="module")
def resnet18():
    return torchvision.models.resnet18().eval()


X64 = torch.randn(1, 3, 64, 64)
X2 = torch.randn(2, 3, 64, 64)  # the oracle compares outputs over a batch (_oracle.signal)


def test_channels_physically_removed_and_metadata_follows(resnet18):
    before = {n: p.clone() for n, p in resnet18.state_dict().items()}
    result = st.prune_channels(resnet18, X64, ratio=0.5)
    m = result.model
    assert m.conv1.out_channels == m.conv1.weight.shape[0] == 32
    assert m.bn1.num_features == m.bn1.weight.shape[0] == 32
    assert m.layer1[0].conv1.in_channels == 32
    assert m.fc.in_features == m.fc.weight.shape[1] == 256 and m.fc.out_features == 1000
    assert "Conv2d(3, 32, kernel_size=(7, 7)" in repr(m)
    # the input model is untouched and the plan is plain JSON
    assert all(torch.equal(before[n], t) for n, t in resnet18.state_dict().items())
    json.dumps(result.plan)
    assert result.after["params"] < result.before["params"] == 11689512
    assert "params" in str(result)
    # the pruned model re-traces and re-prunes cleanly
    again = st.prune_channels(m, X64, ratio=0.5)
    check_pruned(m, again, X2)


def test_depthwise_groups_follow():
    model = torchvision.models.mobilenet_v2().eval()
    result = st.prune_channels(model, X64, ratio=0.5)
    for mod in result.model.modules():
        if isinstance(mod, nn.Conv2d) and mod.groups > 1:
            assert mod.groups == mod.in_channels == mod.out_channels == mod.weight.shape[0]
    check_pruned(model, result, X2)


def test_round_to_and_ratios_and_ignore(resnet18):
    r = st.prune_channels(resnet18, X64, ratio=0.3, round_to=16)
    widths = [m.out_channels for m in r.model.modules() if isinstance(m, nn.Conv2d)]
    assert all(w % 16 == 0 for w in widths if w >= 64)
    r = st.prune_channels(resnet18, X64, ratio=0.0, ratios={"layer1.0.conv1": 0.75})
    assert r.model.layer1[0].conv1.out_channels == 16
    assert r.model.layer1[1].conv1.out_channels == 64
    r = st.prune_channels(resnet18, X64, ratio=0.5, ignore=["layer4.1.conv1"])
    assert r.model.layer4[1].conv1.out_channels == 512
    assert r.model.layer4[0].conv1.out_channels == 256


def test_global_scope_and_target_macs(resnet18):
    base = st.analyze(resnet18, X64).macs
    r = st.prune_channels(resnet18, X64, ratio=0.5, scope="global", round_to=None)
    pruned = sum(len(g["removed"]) for g in r.plan["groups"])
    total = sum(g["size"] for g in r.plan["groups"])
    assert abs(pruned / total - 0.5) < 0.01
    check_pruned(resnet18, r, X2)
    r = st.prune_channels(resnet18, X64, target_macs=base // 2)
    assert base // 2 * 0.9 <= r.after["macs"] <= base // 2
    with pytest.raises(st.PruneError, match="cannot be reached"):
        st.prune_channels(resnet18, X64, target_macs=1000)


@pytest.mark.parametrize("importance", ["l1", "l2", "bn_scale", "fpgm", "random"])
def test_importances_are_exact(resnet18, importance):
    r = st.prune_channels(resnet18, X64, ratio=0.5, importance=importance)
    check_pruned(resnet18, r, X2)


def test_bn_scale_removes_the_small_gammas():
    net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 4, 3))
    with torch.no_grad():
        net[1].weight.copy_(torch.arange(16, dtype=torch.float) - 7.5)  # |gamma| smallest at 7,8
    r = st.prune_channels(
        net.eval(), torch.randn(1, 3, 8, 8), 0.25, importance="bn_scale", round_to=None
    )
    assert r.plan["groups"][0]["removed"] == [6, 7, 8, 9]


def test_taylor_needs_batch_and_loss(resnet18):
    with pytest.raises(st.PruneError, match="batch=.*loss_fn"):
        st.prune_channels(resnet18, X64, importance="taylor")
    batch = (torch.randn(4, 3, 64, 64), torch.randint(0, 1000, (4,)))
    r = st.prune_channels(
        resnet18, X64, importance="taylor", batch=batch, loss_fn=nn.functional.cross_entropy
    )
    check_pruned(resnet18, r, X2)


def test_unknown_op_freezes_and_is_named():
    class Cum(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 16, 1)
            self.b = nn.Conv2d(16, 16, 1)
            self.c = nn.Conv2d(16, 4, 1)

        def forward(self, x):
            return self.c(self.b(self.a(x).cumsum(1)))

    r = st.prune_channels(Cum().eval(), torch.randn(1, 3, 4, 4), 0.5, round_to=None)
    assert any("no dimension rule (op cumsum in module ''" in w for w in r.warnings)
    assert r.model.a.out_channels == 16 and r.model.b.out_channels == 8


def test_multihead_attention_is_swapped_for_a_prunable_twin():
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(32, 16, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64)
    nn.init.normal_(model.heads.head.weight, std=0.02)  # zero at init: the output ignores x
    x = torch.randn(2, 3, 32, 32)
    r = st.prune_channels(model.eval(), x, 0.5, round_to=None)
    names = [f"encoder.layers.encoder_layer_{i}.self_attention" for i in range(2)]
    assert r.plan["swapped"] == names
    attn = r.model.encoder.layers[0].self_attention
    assert isinstance(attn, st.nn.PrunableMultiheadAttention)
    assert (attn.num_heads, attn.head_dim) == (2, 8)  # whole heads pruned
    assert r.model.hidden_dim == r.model.conv_proj.out_channels == 16  # the width too
    assert r.model.encoder.layers[0].mlp[0].out_features == 32
    check_pruned(model, r, x)  # the zoo test round-trips torchvision's ViTs through .slim


def test_data_parallel_is_unwrapped(resnet18):
    r = st.prune_channels(nn.DataParallel(resnet18), X64, 0.5)
    assert isinstance(r.model, torchvision.models.ResNet)
    assert any("DataParallel" in w for w in r.warnings)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ratio": 1.0}, r"ratio=1.0 is outside \[0, 1\)"),
        ({"ratio": -0.1}, "outside"),
        ({"importance": "l3"}, "unknown importance 'l3'.*did you mean l2, l1"),
        ({"scope": "world"}, "scope='world'"),
        ({"ignore": ["layer1.0.conv"]}, "ignore names module 'layer1.0.conv'.*did you mean"),
        ({"ratios": {"fc2": 0.5}}, "ratios names module 'fc2'.*did you mean fc"),
        ({"ratios": {"fc": 1.5}}, r"ratios\['fc'\]=1.5"),
        ({"round_to": 0}, "round_to=0"),
    ],
)
def test_bad_options(resnet18, kwargs, match):
    with pytest.raises(st.ConfigError, match=match):
        st.prune_channels(resnet18, X64, **kwargs)


def test_bad_inputs_and_masked_models(resnet18):
    with pytest.raises(st.ForwardError, match="module 'conv1'"):
        st.prune_channels(resnet18, torch.randn(1, 4, 64, 64))
    masked = torchvision.models.resnet18()
    st.prune_weights_(masked, sparsity=0.5)
    with pytest.raises(st.PruneError, match="make_permanent_"):
        st.prune_channels(masked, X64)


def test_regularizer_terms():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(2, 3))
    with torch.no_grad():
        net[1].weight.fill_(-2.0)
    assert st.regularizer(net, "bn_l1", 0.5)().item() == pytest.approx(0.5 * 8)
    expected = sum(m.weight.flatten(1).norm(dim=1).sum() for m in (net[0], net[2]))
    assert st.regularizer(net, "group_lasso", 1.0)().item() == pytest.approx(expected.item())
    with pytest.raises(st.ConfigError, match="group_lasso"):
        st.regularizer(nn.Linear(2, 2), "bn_l1")
    with pytest.raises(st.ConfigError, match="unknown regularizer"):
        st.regularizer(net, "l0")


def test_rows_pruning_ends_in_a_smaller_model():
    model = torchvision.models.resnet18().eval()
    st.prune_weights_(model, sparsity=0.5, pattern="rows", ignore=["fc"])
    st.make_permanent_(model)
    zeroed = st.zeroed_channels(model)
    r = st.prune_channels(model, X64, importance="zeroed")
    # a channel goes when every conv producing it has a zero row there: exactly the zeroed
    # rows for a conv of its own, a subset for convs tied by residual adds
    assert r.model.layer1[0].conv1.out_channels == 64 - len(zeroed["layer1.0.conv1"])
    assert 64 > r.model.conv1.out_channels >= 64 - len(zeroed["conv1"])
    assert r.after["params"] < r.before["params"]
    check_pruned(model, r, X2)


class _Split(nn.Module):
    """Splits by sizes written in the code: pruning the split conv cannot follow them."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.a, self.b, self.c = nn.Conv2d(3, 32, 1), nn.Conv2d(16, 4, 1), nn.Conv2d(16, 4, 1)
        self.d, self.e = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.a(x)
        p, q = torch.split(y, [16, 16], 1) if self.how == "list" else torch.split(y, 16, 1)
        return self.b(p) + self.c(q) + self.e(self.d(x))


@pytest.mark.parametrize("how", ["list", "int"])
def test_fixed_split_sizes_keep_only_that_group_and_say_why(how):
    model, x = _Split(how).eval(), torch.randn(1, 3, 4, 4)
    r = st.prune_channels(model, x, 0.5, round_to=None)
    assert r.model.a.out_channels == 32  # kept: the code splits at 16
    assert r.model.d.out_channels == 4  # the rest still prunes (no whole class is frozen)
    why = [w for w in r.warnings if w.startswith("kept channels of 'a'")]
    assert why and "does not accept them pruned" in why[0]
    with torch.no_grad():
        assert r.model(x).shape == model(x).shape


def _grouped_block():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, groups=8),  # 8 groups x 4 -> 8
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    ).eval()


@pytest.mark.parametrize("factor, groups, per_group", [("outer", 4, (4, 8)), ("inner", 8, (2, 4))])
def test_factor_chooses_whole_groups_or_channels_per_group(factor, groups, per_group):
    model, x = _grouped_block(), torch.randn(2, 3, 16, 16)
    r = st.prune_channels(model, x, 0.5, round_to=None, factor=factor)
    conv = r.model[3]
    assert conv.groups == groups
    assert (conv.in_channels // groups, conv.out_channels // groups) == per_group
    check_pruned(model, r, x)  # exact: every group is checked against the reference


def _tiny_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(32, 16, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64)
    nn.init.normal_(model.heads.head.weight, std=0.02)
    return model.eval(), torch.randn(2, 3, 32, 32)


@pytest.mark.parametrize("factor, heads, head_dim", [("outer", 2, 8), ("inner", 4, 4)])
def test_factor_prunes_whole_heads_or_head_dim(factor, heads, head_dim):
    model, x = _tiny_vit()
    r = st.prune_channels(model, x, 0.5, round_to=None, factor=factor)
    attn = r.model.encoder.layers[0].self_attention
    assert (attn.num_heads, attn.head_dim) == (heads, head_dim)
    assert attn.scale == 8**-0.5  # the scores keep the original temperature
    by_module = {g["modules"][-1].rpartition(".")[2]: g for g in r.plan["groups"]}
    if factor == "inner":
        # q.k head_dim: the scores are sums over it, so removing some is not exact
        assert not by_module["q_proj"]["exact"] and by_module["v_proj"]["exact"]
        assert by_module["v_proj"]["kept"] == 4
    with torch.no_grad():
        assert r.model(x).shape == (2, 1000)


def test_v_head_dim_pruning_is_exact():
    model, x = _tiny_vit()
    v_projs = {f"encoder.layers.encoder_layer_{i}.self_attention.v_proj": 0.5 for i in range(2)}
    r = st.prune_channels(model, x, 0.0, ratios=v_projs, round_to=None, factor="inner")
    assert r.model.encoder.layers[1].self_attention.v_proj.out_features == 16
    e = oracle_errors(model, r, x)
    assert e["spread"] > 1e-3 and e["exact_err"] < 1e-5


def test_factor_inner_on_hugging_face_attention_keeps_heads(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        vocab_size=100,
    )  # fmt: skip
    model = transformers.BertModel(config).eval()
    inputs = {"input_ids": torch.randint(0, 100, (2, 12))}
    r = st.prune_channels(model, inputs, 0.5, round_to=None, factor="inner")
    a = r.model.encoder.layer[0].attention.self
    assert (a.num_attention_heads, a.attention_head_size) == (4, 8)
    assert (a.query.out_features, a.value.out_features) == (32, 32)
    loaded = st.load(st.save(r, tmp_path / "b.slim"))
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(**inputs).last_hidden_state, r.model(**inputs).last_hidden_state
        )


def test_factor_is_validated(resnet18):
    with pytest.raises(st.ConfigError, match="factor='middle' is invalid; use 'outer'"):
        st.prune_channels(resnet18, X64, factor="middle")


class _NeedsWidth(nn.Module):
    """A forward that rejects hidden widths under 8 (as a fixed rotary or head split does)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 4)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        if h.shape[-1] < 8:
            raise ValueError("hidden width below 8")
        return self.fc2(h)


def test_target_macs_solves_below_the_deepest_cut_that_runs():
    torch.manual_seed(0)
    model, x = _NeedsWidth().eval(), torch.randn(4, 16)
    macs = st.analyze(model, x).macs
    r = st.prune_channels(model, x, target_macs=int(macs * 0.5), round_to=None)
    assert r.after["macs"] <= macs * 0.5 and r.model.fc1.out_features >= 8
    with pytest.raises(st.PruneError, match="the most the model's forward accepts"):
        st.prune_channels(model, x, target_macs=int(macs * 0.1), round_to=None)


class _FixedReshape(nn.Module):
    """One branch reshapes by numbers in the code (any pruning of ``a`` breaks it); the other
    holds most of the MACs."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(16, 32), nn.Linear(16, 256), nn.Linear(256, 8)

    def forward(self, x):
        h = torch.relu(self.a(x)).reshape(x.shape[0], 4, 8).sum(1)
        return self.c(torch.relu(self.b(x))) + h


def test_target_macs_keeps_the_groups_that_break_the_deepest_cut():
    """No uniform cut that runs reaches the target, so the groups that break the deepest cut
    are found (bisection), kept with a warning, and the rest pruned to the target."""
    torch.manual_seed(0)
    model, x = _FixedReshape().eval(), torch.randn(4, 16)
    macs = st.analyze(model, x).macs
    r = st.prune_channels(model, x, target_macs=int(macs * 0.4), round_to=None)
    assert r.model.a.out_features == 32 and r.model.b.out_features < 128
    assert r.after["macs"] <= macs * 0.4
    assert any("'a'" in w and "does not accept them pruned" in w for w in r.warnings)
    check_pruned(model, r, x)


def _small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10),
    ).eval()  # fmt: skip


def test_speedup_target_is_solved_by_timing_and_recorded():
    x = torch.randn(1, 3, 48, 48)
    r = st.prune_channels(_small_cnn(), x, speedup=2.0, threads=1)
    lat = r.plan["latency"]
    assert lat["threads"] == 1 and lat["target_ms"] == pytest.approx(lat["original_ms"] / 2)
    # each bisection step is a pruned model timed against the original; the chosen ratio is
    # one of them, and it meets the target
    chosen = [s for s in lat["steps"] if s["ratio"] == r.plan["ratio"]]
    assert 0 < r.plan["ratio"] <= 0.95 and len(lat["steps"]) >= 3
    assert chosen and chosen[0]["ms"] <= lat["target_ms"]
    assert r.after["macs"] < 0.8 * r.before["macs"]
    assert r.plan["options"]["speedup"] == 2.0


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"speedup": 2.0, "target_macs": 10}, "one target"),
        ({"speedup": 0.5}, "speedup=0.5 is invalid"),
        ({"target_latency_ms": -1.0}, "target_latency_ms=-1.0 is invalid"),
        ({"speedup": 2.0, "threads": 0}, "threads"),
    ],
)
def test_bad_latency_targets_are_named(kwargs, words):
    with pytest.raises(st.ConfigError, match=words):
        st.prune_channels(_small_cnn(), torch.randn(1, 3, 16, 16), **kwargs)


def test_unreachable_latency_target_says_what_the_model_takes():
    with pytest.raises(st.PruneError, match=r"cannot be reached on this CPU at 1 thread.*ms"):
        st.prune_channels(_small_cnn(), torch.randn(1, 3, 16, 16), target_latency_ms=1e-6)
