"""One registry rule for every registry, and every public ``register_*`` extended from outside.

Each extension test registers a user's own layer, op or kind, shows the package uses it, and
removes it again so that tests stay independent.
"""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import slimtorch as st
from slimtorch._options import Options
from slimtorch._registry import Registry
from slimtorch.convert import Conversion, dilate_to_restore, dilator, foldable
from slimtorch.convert.atrous import DILATORS
from slimtorch.convert.fuse_bn import FOLDABLE
from slimtorch.convert.registry import CONVERSIONS
from slimtorch.edit import SURGERY
from slimtorch.errors import ConfigError, ConvertError
from slimtorch.graph.groups import CONSTRAINTS
from slimtorch.measure.macs import MAC_RULES
from slimtorch.nn import build_module, register_module
from slimtorch.nn._registry import BUILDERS
from slimtorch.prune.channels.importance import IMPORTANCES
from slimtorch.prune.weights.criteria import WEIGHT_CRITERIA
from slimtorch.prune.weights.layers import PRUNABLE

aten = torch.ops.aten


# -- the lookup rule ---------------------------------------------------------------------------
class Base(nn.Module):
    def forward(self, x):
        return x


class SameForward(Base):
    pass


class OwnForward(Base):
    def forward(self, x):
        return 2 * x


def test_class_keys_walk_the_mro_and_strings_name_classes():
    reg = Registry("thing", "class")
    reg.add(Base, "base")
    reg.add("test_registry.OwnForward", "by name")
    assert reg.lookup(SameForward) == "base"  # inherited
    assert reg.lookup(OwnForward) == "by name"  # nearest class first, by its string key
    assert reg.lookup(nn.Linear) is None
    assert reg.list() == ["Base", "test_registry.OwnForward"]


def test_a_class_lookup_sees_entries_added_and_removed_after_it():
    reg = Registry("thing", "class")
    reg.add(Base, "base")
    assert reg.lookup(SameForward) == "base" and reg.lookup(nn.Linear, "none") == "none"
    reg.add(SameForward, "own")  # a nearer entry, added after the lookups above
    assert reg.lookup(SameForward) == "own" and reg.lookup(SameForward()) == "own"
    reg.remove(SameForward)
    assert reg.lookup(SameForward) == "base"
    reg.remove(Base)
    assert reg.lookup(SameForward) is None


def test_same_forward_inherits_only_where_forward_is_kept():
    reg = Registry("rewrite", "class", inherit="same_forward")
    reg.add(Base, "base")
    assert reg.lookup(SameForward) == "base"
    assert reg.lookup(OwnForward) is None  # its own forward computes something else


def test_op_keys_try_the_overload_then_its_packet():
    reg = Registry("rule", "op")
    reg.add(aten.add, "packet")
    reg.add(aten.mul.Tensor, "overload")
    assert reg.lookup(aten.add.Tensor) == "packet"
    assert reg.lookup(aten.mul.Tensor) == "overload"
    assert reg.lookup(aten.mul.Scalar) is None


def test_duplicates_are_refused_unless_override():
    reg = Registry("importance", "name")
    reg.add("l1", len)
    with pytest.raises(ConfigError, match="already has a importance.*override=True"):
        reg.add("l1", sum)
    reg.add("l1", sum, override=True)
    assert reg.get("l1") is sum
    reg.add("l1", sum)  # the same value again is not a conflict


def test_get_names_the_known_keys_and_the_fix():
    reg = Registry("kind", "name", hint="Register one with @register_kind.")
    reg.add("low_rank", 1)
    with pytest.raises(ConfigError, match=r"no kind for 'low_rnk' \(did you mean low_rank\?\)"):
        reg.get("low_rnk")
    with pytest.raises(ConfigError, match="@register_kind"):
        reg.get("x")


def test_a_class_and_its_string_name_clash():
    reg = Registry("rule", "class")
    reg.add(Base, "a")
    with pytest.raises(ConfigError, match="already has"):
        reg.add(Base, "b")


def test_every_package_registry_lists_its_entries():
    registries = [
        (st.graph.rules.RULES, "aten.convolution"),
        (MAC_RULES, "aten.mm"),
        (CONSTRAINTS, "MultiheadAttention"),
        (SURGERY, "Conv2d"),
        (IMPORTANCES, "l1"),
        (WEIGHT_CRITERIA, "lamp"),
        (PRUNABLE, "Linear"),
        (CONVERSIONS, "low_rank"),
        (FOLDABLE, "Conv2d"),
        (DILATORS, "Conv2d"),
        (BUILDERS, "DepthwiseSeparableConv2d"),
    ]
    for reg, entry in registries:
        assert isinstance(reg, Registry)
        assert entry in reg.list(), (reg, reg.list()[:5])


# -- each public register_* extends the package ------------------------------------------------
class Widen(nn.Module):
    """A user layer: y = x @ w.T with its own attribute naming its width."""

    def __init__(self, cin, cout):
        super().__init__()
        self.w = nn.Parameter(torch.randn(cout, cin))
        self.width = cout

    def forward(self, x):
        return torch.nn.functional.linear(x, self.w)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 16)
        self.b = Widen(16, 16)
        self.c = nn.Linear(16, 3)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def test_register_surgery_keeps_a_user_layers_metadata_in_step():
    x = torch.randn(2, 6)
    before = st.prune_channels(Net(), x, 0.5, round_to=None)
    assert before.model.b.w.shape[0] == 8 and before.model.b.width == 16  # stale without a rule

    @st.register_surgery(Widen)
    def _widen(m, info):
        return {"width": m.w.shape[0]}

    try:
        after = st.prune_channels(Net(), x, 0.5, round_to=None)
        assert after.model.b.width == after.model.b.w.shape[0] == 8
        assert after.plan["edit"]["attrs"]["b"] == {"width": 8}
    finally:
        SURGERY.remove(Widen)


def test_register_constraint_freezes_what_a_user_layer_cannot_hold():
    x = torch.randn(2, 6)

    @st.register_constraint(Widen)
    def _fixed(module, name, ctx, tids):
        for pname, _ in module.named_parameters(prefix=name):
            ctx.freeze_tensor(tids[pname], f"{name} has a fixed width")

    try:
        r = st.prune_channels(Net(), x, 0.5, round_to=None)
        assert r.model.b.w.shape == (16, 16)
        assert any("b has a fixed width" in w for w in r.warnings)
    finally:
        CONSTRAINTS.remove(Widen)


def test_register_importance_chooses_the_channels():
    @st.register_importance("first_half")
    def _first_half(group, params, grads):
        return -torch.arange(group.size, dtype=torch.float32)  # keeps the lowest indices

    try:
        r = st.prune_channels(Net(), torch.randn(2, 6), 0.5, importance="first_half", round_to=None)
        assert all(g["removed"] == list(range(8, 16)) for g in r.plan["groups"])
        assert r.plan["options"]["importance"] == "first_half"
    finally:
        IMPORTANCES.remove("first_half")


def test_register_weight_criterion_ranks_the_weights():
    @st.register_weight_criterion("smallest_kept")
    def _inverse(magnitude):
        return -magnitude

    try:
        lin = nn.Linear(32, 32)
        dense = lin.weight.detach().abs().clone()
        st.prune_weights_(lin, 0.5, criterion="smallest_kept")
        zero = lin.weight.detach() == 0
        assert dense[~zero].max() <= dense[zero].min()  # the largest magnitudes were zeroed
    finally:
        WEIGHT_CRITERIA.remove("smallest_kept")


def test_register_prunable_makes_a_user_layer_maskable():
    net = nn.Sequential(Widen(16, 16))
    assert st.sparsity(net).names == []

    st.register_prunable(Widen, "w")
    try:
        st.prune_weights_(net, 0.75)
        assert float((net[0].w == 0).float().mean()) == 0.75
        with pytest.raises(ConfigError, match="already has"):
            st.register_prunable(Widen, "weight")
    finally:
        PRUNABLE.remove(Widen)


@torch.library.custom_op("slimtorch_registry::scaled_mm", mutates_args=())
def scaled_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 2 * (a @ b)


@scaled_mm.register_fake
def _(a, b):
    return a.new_empty(a.shape[0], b.shape[1])


class UsesCustomOp(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 4))

    def forward(self, x):
        return torch.ops.slimtorch_registry.scaled_mm(x, self.w)


def test_register_macs_counts_a_custom_op():
    op = torch.ops.slimtorch_registry.scaled_mm
    x = torch.randn(3, 8)
    assert st.analyze(UsesCustomOp(), x).macs == 0

    @st.measure.macs.register_macs(op)
    def _macs(graph, node):
        (m, k), (_, n) = graph.arg(node, 0).shape, graph.arg(node, 1).shape
        return m * k * n

    try:
        assert st.analyze(UsesCustomOp(), x).macs == 3 * 8 * 4
    finally:
        MAC_RULES.remove(op)


@register_module
class Doubled(nn.Module):
    """A user block that ``.slim`` can rebuild from its config."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.inner = nn.Linear(in_features, out_features)

    def forward(self, x):
        return 2 * self.inner(x)

    def config(self):
        return {"in_features": self.inner.in_features, "out_features": self.inner.out_features}


def test_register_module_rebuilds_a_user_block_and_refuses_a_second_of_that_name():
    assert isinstance(build_module("Doubled", {"in_features": 2, "out_features": 3}), Doubled)

    class Other(nn.Module):
        pass

    Other.__name__ = "Doubled"
    with pytest.raises(ConfigError, match="Doubled already has a module builder"):
        register_module(Other)


def make_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


@dataclass(frozen=True)
class DoubleOptions(Options):
    """The user kind has no options."""


def test_register_conversion_and_rule_add_a_kind_that_saves(tmp_path):
    @st.register_conversion
    class Double(Conversion):
        kind = "double_it"
        Options = DoubleOptions

    @Double.rule(nn.Linear)
    def _linear(name, module, options, x):
        new = Doubled(module.in_features, module.out_features)
        with torch.no_grad():
            new.inner.weight.copy_(module.weight / 2)
            new.inner.bias.copy_(module.bias / 2)
        return new

    try:
        assert "double_it" in st.conversion_kinds()
        net, x = make_net(), torch.randn(3, 4)
        r = st.convert(net, "double_it", example_inputs=x)
        assert [type(m).__name__ for m in r.model] == ["Doubled", "ReLU", "Doubled"]
        torch.testing.assert_close(r.model(x), net(x))
        assert st.edit.edits_of(r.model)[-1]["why"]["kind"] == "double_it"
        path = st.save(r, tmp_path / "d.slim", spec="test_registry:make_net")
        loaded = st.load(path, trust_code=True)
        torch.testing.assert_close(loaded(x), r.model(x), rtol=0, atol=0)
        with pytest.raises(ConfigError, match="already has"):

            @st.register_conversion
            class Again(Conversion):
                kind = "double_it"
                Options = DoubleOptions
    finally:
        CONVERSIONS.remove("double_it")


class ScaledConv(nn.Conv2d):
    """A conv subclass with its own forward: generic rewrites must not apply to it."""

    def forward(self, x):
        return super().forward(x) * 1.0


def test_foldable_teaches_fuse_bn_a_user_conv():
    net = nn.Sequential(ScaledConv(3, 4, 3), nn.BatchNorm2d(4)).eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    x = torch.randn(1, 3, 8, 8)
    assert st.convert(net, "fuse_bn", example_inputs=x).layers == []  # not taken by Conv2d

    @foldable(ScaledConv)
    def _rebuild(module, weight, bias):
        new = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size)
        with torch.no_grad():
            new.weight.copy_(weight)
            new.bias.copy_(bias)
        return new

    try:
        r = st.convert(net, "fuse_bn", example_inputs=x)
        assert [row.name for row in r.layers] == ["0"]
        torch.testing.assert_close(r.model(x), net(x), atol=1e-5, rtol=1e-5)
    finally:
        FOLDABLE.remove(ScaledConv)


def test_dilator_teaches_dilate_to_restore_a_user_conv():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), ScaledConv(4, 4, 3, padding=1))
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ConvertError, match="'1' \\(ScaledConv\\).*cannot be dilated.*dilator"):
        dilate_to_restore(net, ["0"], x)  # the user conv cannot be dilated yet

    @dilator(ScaledConv)
    def _dilate(module, divisor, factor):
        # A type .slim can rebuild (ScaledConv's extra factor is 1.0).
        new = nn.Conv2d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            stride=module.stride[0] // divisor,
            padding=module.padding[0] * factor,
            dilation=module.dilation[0] * factor,
        )
        new.load_state_dict(module.state_dict())
        return new

    try:
        out = dilate_to_restore(net, ["0"], x)
        torch.testing.assert_close(out(x)[..., ::2, ::2], net(x), atol=1e-5, rtol=1e-5)
    finally:
        DILATORS.remove(ScaledConv)


class Rigid(nn.Module):
    """A user layer whose forward insists on its construction width."""

    def __init__(self, width=16):
        super().__init__()
        self.width, self.lin = width, nn.Linear(width, width)

    def forward(self, x):
        assert x.shape[-1] == self.width, "Rigid needs its width"
        return self.lin(x)


class RigidNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.r, self.c = nn.Linear(6, 16), Rigid(), nn.Linear(16, 3)

    def forward(self, x):
        return self.c(torch.relu(self.r(torch.relu(self.a(x)))))


def test_register_twin_swaps_a_rigid_layer_for_a_prunable_one():
    from slimtorch.prune.channels import register_twin
    from slimtorch.prune.channels.twins import TWINS

    x = torch.randn(4, 6)
    kept = st.prune_channels(RigidNet(), x, 0.5, round_to=None)
    assert kept.model.a.out_features == 16  # the assert in Rigid.forward rejects pruning

    @register_twin(Rigid)
    def _flexible(module):
        return module.lin  # the same function, without the width check

    try:
        r = st.prune_channels(RigidNet(), x, 0.5, round_to=None)
        assert r.plan["swapped"] == ["r"]
        assert r.model.a.out_features == 8 and isinstance(r.model.r, nn.Linear)
    finally:
        TWINS.remove(Rigid)
