"""Per-op dimension rules, one tiny model per op family: the coupling each rule must produce.

Assertions go through ``build_groups`` (group sizes, members, ``exact``, frozen reasons) where it
can; ``DimContext`` is read directly only to check which layouts are one index space.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import slimtorch as st
from _oracle import check_pruned
from slimtorch.graph.groups import build_groups
from slimtorch.graph.rules import DimContext, rule_for
from slimtorch.graph.trace import trace

aten = torch.ops.aten
OUTPUT = "dimension of a model output"
HEAD_DIM = (
    "summed over between two activations (attention head_dim of q.k); whole heads are pruned, "
    "factor='inner' prunes head_dim"
)
INNER = "inner factor of a product (heads x head_dim, groups x channels) with factor='outer'"


def groups_of(model, x, **trace_kwargs):
    return build_groups(model, trace(model, x, **trace_kwargs))


def members(group):
    """(param, dim, offset, factors, pos) of every member."""
    return {(m.param, m.dim, m.offset, m.factors, m.pos) for m in group.members}


def roles(group):
    return {(m.param, m.dim): set(m.roles) for m in group.members}


def summary(gset):
    """Every group as (size, producing modules, exact), in a stable order."""
    return sorted((g.size, tuple(g.modules), g.exact) for g in gset.groups)


def only_group(gset):
    assert len(gset.groups) == 1, summary(gset)
    return gset.groups[0]


def group_of(gset, *modules):
    found = [g for g in gset.groups if g.modules == list(modules)]
    assert len(found) == 1, summary(gset)
    return found[0]


def context(model, x, **trace_kwargs):
    graph = trace(model, x, **trace_kwargs)
    return graph, DimContext(graph).run()


def param_tid(graph, name):
    return next(t.tid for t in graph.tensors.values() if t.name == name)


def space(ctx, tid, dim):
    """The expanded layout of (tensor, dim) as roots: equal for coupled dims."""
    atoms = ctx.atoms
    return [tuple(atoms.find(a) for a in seg) for seg in atoms.expand(ctx.L(tid, dim))]


def node(graph, name):
    found = [n for n in graph.nodes if n.name == name]
    assert len(found) == 1, [n.name for n in graph.nodes]
    return found[0]


def conv_bn(cin, cout, **kw):
    return nn.Sequential(nn.Conv2d(cin, cout, 1, **kw), nn.BatchNorm2d(cout))


# -- elementwise and broadcast ---------------------------------------------------------------
class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.c = nn.Conv2d(8, 8, 1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = self.a(x)
        z = self.b(y) + y
        return self.head(self.c(z).relu())


def test_residual_add_couples_both_inputs_channels():
    gset = groups_of(Residual(), torch.randn(1, 3, 8, 8))
    assert summary(gset) == [(8, ("a", "b"), True), (8, ("c",), True)]
    res = group_of(gset, "a", "b")
    assert members(res) == {
        ("a.weight", 0, 0, (8,), 0),
        ("a.bias", 0, 0, (8,), 0),
        ("b.weight", 0, 0, (8,), 0),
        ("b.weight", 1, 0, (8,), 0),
        ("b.bias", 0, 0, (8,), 0),
        ("c.weight", 1, 0, (8,), 0),
    }
    assert roles(res)["a.weight", 0] == {"produce"}
    assert roles(res)["b.weight", 1] == {"contract"}
    assert roles(res)["c.weight", 1] == {"contract"}
    assert roles(res)["a.bias", 0] == set()
    assert members(group_of(gset, "c")) == {
        ("c.weight", 0, 0, (8,), 0),
        ("c.bias", 0, 0, (8,), 0),
        ("head.weight", 1, 0, (8,), 0),
    }
    assert gset.frozen == {"head": OUTPUT}


class LayerScale(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.gamma = nn.Parameter(torch.ones(8, 1, 1))
        self.c = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.c(self.a(x) * self.gamma)


def test_broadcast_mul_couples_a_per_channel_parameter():
    group = only_group(groups_of(LayerScale(), torch.randn(1, 3, 4, 4)))
    assert group.size == 8 and group.modules == ["a"] and group.exact
    assert ("gamma", 0, 0, (8,), 0) in members(group)
    assert not any(m.param == "gamma" and m.dim > 0 for m in group.members)


# -- convolution ------------------------------------------------------------------------------
def test_conv_couples_weight_dim0_bias_and_output_channels():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 1))
    graph, ctx = context(model, torch.randn(1, 3, 6, 6))
    conv0 = graph.nodes[0]
    w0, b0, w1 = (param_tid(graph, n) for n in ("0.weight", "0.bias", "1.weight"))
    out = space(ctx, conv0.outputs[0], 1)
    assert len(out) == 1 and len(out[0]) == 1
    assert space(ctx, w0, 0) == space(ctx, b0, 0) == space(ctx, w1, 1) == out
    assert space(ctx, w0, 1) == space(ctx, conv0.inputs[0], 1) != out
    assert ctx.roles[w0, 0] == {"produce"} and ctx.roles[w0, 1] == {"contract"}
    assert ctx.atoms.has(out[0][0], "produce")


def test_depthwise_conv_couples_its_input_and_output_channels():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Conv2d(8, 4, 1),
    )
    group = only_group(groups_of(model, torch.randn(1, 3, 6, 6)))
    assert (group.size, group.modules, group.exact) == (8, ["0", "3"], True)
    assert members(group) == {
        ("0.weight", 0, 0, (8,), 0),
        ("0.bias", 0, 0, (8,), 0),
        ("1.weight", 0, 0, (8,), 0),
        ("1.bias", 0, 0, (8,), 0),
        ("1.running_mean", 0, 0, (8,), 0),
        ("1.running_var", 0, 0, (8,), 0),
        ("3.weight", 0, 0, (8,), 0),
        ("3.bias", 0, 0, (8,), 0),
        ("4.weight", 1, 0, (8,), 0),
    }


def test_depthwise_conv_with_a_channel_multiplier_prunes_input_channels_with_their_outputs():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 16, 3, groups=8), nn.Conv2d(16, 2, 1))
    gset = groups_of(model, torch.randn(1, 3, 6, 6))
    group = only_group(gset)
    assert (group.size, group.modules) == (8, ["0", "1"])
    assert members(group) == {
        ("0.weight", 0, 0, (8,), 0),
        ("0.bias", 0, 0, (8,), 0),
        ("1.weight", 0, 0, (8, 2), 0),  # 16 outputs = 8 groups x 2
        ("1.bias", 0, 0, (8, 2), 0),
        ("2.weight", 1, 0, (8, 2), 0),
    }
    assert gset.frozen["1"] == INNER


def test_grouped_conv_prunes_whole_groups_on_both_sides():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, groups=2), nn.Conv2d(8, 2, 1))
    gset = groups_of(model, torch.randn(1, 3, 6, 6))
    group = only_group(gset)
    assert (group.size, group.modules) == (2, ["0", "1"])
    assert members(group) == {
        ("0.weight", 0, 0, (2, 4), 0),
        ("0.bias", 0, 0, (2, 4), 0),
        ("1.weight", 0, 0, (2, 4), 0),
        ("1.bias", 0, 0, (2, 4), 0),
        ("2.weight", 1, 0, (2, 4), 0),
    }
    assert gset.frozen == {"0": INNER, "1": INNER, "2": OUTPUT}


def test_transposed_conv_produces_along_weight_dim1():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 1), nn.ConvTranspose2d(8, 6, 2, stride=2), nn.Conv2d(6, 2, 1)
    )
    gset = groups_of(model, torch.randn(1, 3, 4, 4))
    assert summary(gset) == [(6, ("1",), True), (8, ("0",), True)]
    assert roles(group_of(gset, "0"))["1.weight", 0] == {"contract"}
    up = group_of(gset, "1")
    assert members(up) == {
        ("1.weight", 1, 0, (6,), 0),
        ("1.bias", 0, 0, (6,), 0),
        ("2.weight", 1, 0, (6,), 0),
    }
    assert roles(up)["1.weight", 1] == {"produce"}


# -- matrix products --------------------------------------------------------------------------
def test_linear_through_t_and_addmm_marks_roles_on_the_weight():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    graph, ctx = context(model, torch.randn(2, 4))
    assert [n.name for n in graph.nodes] == ["t", "addmm", "relu", "t", "addmm"]
    w0, b0, w2 = (param_tid(graph, n) for n in ("0.weight", "0.bias", "2.weight"))
    assert ctx.roles[w0, 0] == {"produce"} and ctx.roles[w0, 1] == {"contract"}
    assert ctx.roles[w2, 1] == {"contract"}
    hidden = space(ctx, graph.nodes[1].outputs[0], 1)
    assert space(ctx, w0, 0) == space(ctx, b0, 0) == space(ctx, w2, 1) == hidden
    group = only_group(build_groups(model, graph))
    assert members(group) == {
        ("0.weight", 0, 0, (6,), 0),
        ("0.bias", 0, 0, (6,), 0),
        ("2.weight", 1, 0, (6,), 0),
    }


def test_linear_on_a_sequence_couples_the_last_dim():
    model = nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 3))
    gset = groups_of(model, torch.randn(2, 5, 4))
    group = only_group(gset)
    assert (group.size, group.modules, group.exact) == (6, ["0"], True)
    assert ("2.weight", 1, 0, (6,), 0) in members(group)


class MatMul(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(4, 6))
        self.w2 = nn.Parameter(torch.randn(6, 3))

    def forward(self, x):
        return (x @ self.w1).relu() @ self.w2


@pytest.mark.parametrize("shape", [(2, 4), (5, 2, 4)], ids=["mm", "matmul-3d"])
def test_mm_and_matmul_produce_columns_and_contract_rows(shape):
    group = only_group(groups_of(MatMul(), torch.randn(*shape)))
    assert group.size == 6 and group.modules == [""]
    assert members(group) == {("w1", 1, 0, (6,), 0), ("w2", 0, 0, (6,), 0)}
    assert roles(group) == {("w1", 1): {"produce"}, ("w2", 0): {"contract"}}


class ScoreBmm(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = nn.Linear(4, 6)
        self.k = nn.Linear(4, 6)
        self.v = nn.Linear(4, 6)
        self.o = nn.Linear(6, 2)

    def forward(self, x):
        att = torch.bmm(self.q(x), self.k(x).transpose(1, 2)).softmax(-1)
        return self.o(torch.bmm(att, self.v(x)))


def test_bmm_between_activations_freezes_the_summed_dim_and_couples_batches():
    model = ScoreBmm()
    graph, ctx = context(model, torch.randn(2, 5, 4))
    scores, mix = (n for n in graph.nodes if n.name == "bmm")
    assert space(ctx, scores.args[0].tid, 0) == space(ctx, scores.outputs[0], 0)
    assert space(ctx, mix.args[1].tid, 2) == space(ctx, mix.outputs[0], 2)
    gset = build_groups(model, graph)
    reason = "summed over between two activations (attention head_dim of q.k)"
    assert gset.frozen["q"].startswith(reason) and gset.frozen["k"].startswith(reason)
    # The value path is a plain linear -> bmm -> linear chain.
    assert summary(gset) == [(6, ("v",), True)]
    assert ("o.weight", 1, 0, (6,), 0) in members(gset.groups[0])


# -- normalization ------------------------------------------------------------------------------
def test_batch_norm_couples_its_affine_and_running_stats_exactly():
    model = nn.Sequential(conv_bn(3, 8), nn.Conv2d(8, 2, 1))
    group = only_group(groups_of(model, torch.randn(1, 3, 4, 4)))
    assert group.exact and group.modules == ["0.0"]
    bn = {m for m in members(group) if m[0].startswith("0.1.")}
    assert bn == {
        (f"0.1.{n}", 0, 0, (8,), 0) for n in ("weight", "bias", "running_mean", "running_var")
    }


def test_layer_norm_couples_its_affine_and_marks_the_group_inexact():
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 3))
    graph, ctx = context(model, torch.randn(2, 5, 4))
    ln = node(graph, "native_layer_norm")
    assert all(ctx.atoms.has(a, "cross") for (a,) in space(ctx, ln.args[0].tid, 2))
    assert not any(ctx.atoms.has(a, "cross") for (a,) in space(ctx, ln.args[0].tid, 1))
    group = only_group(build_groups(model, graph))
    assert (group.size, group.exact) == (6, False)
    assert {("1.weight", 0, 0, (6,), 0), ("1.bias", 0, 0, (6,), 0)} <= members(group)


def test_group_norm_freezes_with_a_reason_naming_op_and_module():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.GroupNorm(2, 8), nn.Conv2d(8, 2, 1))
    gset = groups_of(model, torch.randn(1, 3, 4, 4))
    assert gset.groups == []
    assert gset.frozen["0"] == (
        "group norm: channels are normalized in fixed groups (op native_group_norm in module '1')"
    )


def test_softmax_over_channels_is_inexact():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Softmax(1), nn.Conv2d(8, 2, 1))
    group = only_group(groups_of(model, torch.randn(1, 3, 4, 4)))
    assert (group.size, group.exact) == (8, False)


# -- cat / split / chunk / slice / select -----------------------------------------------------
class Cat(nn.Module):
    def __init__(self, flatten=False):
        super().__init__()
        self.flatten = flatten
        self.a = nn.Conv2d(3, 2, 1)
        self.b = nn.Conv2d(3, 3, 1)
        self.c = nn.Linear(5 * 2 * 2, 2) if flatten else nn.Conv2d(5, 2, 1)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], 1)
        return self.c(y.flatten(1)) if self.flatten else self.c(y)


def test_cat_refines_the_output_channels_into_its_inputs():
    model = Cat()
    graph, ctx = context(model, torch.randn(1, 3, 2, 2))
    cat = node(graph, "cat")
    a, b = (space(ctx, t.tid, 1) for t in cat.args[0])
    assert space(ctx, cat.outputs[0], 1) == a + b
    assert a != b
    gset = build_groups(model, graph)
    assert summary(gset) == [(2, ("a",), True), (3, ("b",), True)]
    assert ("c.weight", 1, 0, (2,), 0) in members(group_of(gset, "a"))
    assert ("c.weight", 1, 2, (3,), 0) in members(group_of(gset, "b"))


def test_cat_then_flatten_gives_each_part_its_block_of_features():
    gset = groups_of(Cat(flatten=True), torch.randn(1, 3, 2, 2))
    assert ("c.weight", 1, 0, (2, 2, 2), 0) in members(group_of(gset, "a"))
    assert ("c.weight", 1, 8, (3, 2, 2), 0) in members(group_of(gset, "b"))


class Chunk(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.c = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        gate, value = self.a(x).chunk(2, 1)
        return self.c(gate.sigmoid() * value)


def test_chunk_into_equal_parts_couples_the_parts():
    group = only_group(groups_of(Chunk(), torch.randn(1, 3, 4, 4)))
    assert group.size == 4
    assert members(group) == {
        ("a.weight", 0, 0, (4,), 0),
        ("a.weight", 0, 4, (4,), 0),
        ("a.bias", 0, 0, (4,), 0),
        ("a.bias", 0, 4, (4,), 0),
        ("c.weight", 1, 0, (4,), 0),
    }


class Split(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.a = nn.Conv2d(3, 8, 1)
        self.c = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        y = self.a(x)
        parts = y.split([3, 5], 1) if self.how == "split" else y.chunk(3, 1)
        return self.c(parts[0])


@pytest.mark.parametrize(
    "how, sizes", [("split", [3, 5]), ("chunk", [3, 3, 2])], ids=["split", "chunk"]
)
def test_split_into_unequal_sizes_freezes(how, sizes):
    gset = groups_of(Split(how), torch.randn(1, 3, 4, 4))
    assert gset.groups == []
    assert gset.frozen["a"] == f"split into fixed unequal sizes {sizes} in ''"


class Slice(nn.Module):
    def __init__(self, step=1):
        super().__init__()
        self.step = step
        self.a = nn.Linear(3, 8)
        self.c = nn.Linear(5 if step == 1 else 4, 2)

    def forward(self, x):
        y = self.a(x)
        return self.c(y[:, 2:7] if self.step == 1 else y[:, :: self.step])


def test_slice_refines_the_dim_into_before_inside_and_after():
    model = Slice()
    graph, ctx = context(model, torch.randn(2, 3))
    sl = node(graph, "slice.Tensor")
    before, inside, after = space(ctx, sl.args[0].tid, 1)
    assert [inside] == space(ctx, sl.outputs[0], 1)
    assert [ctx.atoms.size[s[0]] for s in (before, inside, after)] == [2, 5, 1]
    # y[:, 2:7]: both bounds are numbers in the code, so what lies before 7 keeps its size.
    reason = "sliced at fixed positions in '' (op slice.Tensor)"
    assert [ctx.atoms.frozen.get(s[0]) for s in (before, inside, after)] == [reason, reason, None]
    assert build_groups(model, graph).groups == []


class SliceToEnd(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 12)
        self.c = nn.Linear(8, 2)

    def forward(self, x):
        return self.c(self.a(x)[:, 4:])


def test_slice_to_the_end_keeps_the_inside_prunable():
    model, x = SliceToEnd(), torch.randn(2, 3)
    graph = trace(model, x, grad=True)
    groups = build_groups(model, graph).groups
    assert [(g.size, g.modules) for g in groups] == [(8, ["a"])]
    assert ("c.weight", 1, 0, (8,), 0) in members(groups[0])
    assert ("a.weight", 0, 4, (8,), 0) in members(groups[0])
    result = st.prune_channels(model, x, 0.5, round_to=None)
    assert (result.model.a.out_features, result.model.c.in_features) == (8, 4)
    check_pruned(model, result, x)


def test_strided_slice_freezes():
    gset = groups_of(Slice(step=2), torch.randn(2, 3))
    assert gset.groups == []
    assert gset.frozen["a"] == "strided slice in ''"


class ConstantSlice(nn.Module):
    """Hard-coded bounds along a prunable dim: pruning before them would move them."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.a = nn.Linear(3, 16)
        self.c = nn.Linear(8 if how == "slice" else 1, 2)

    def forward(self, x):
        y = self.a(x)
        if self.how == "slice":
            return self.c(y[:, 4:12])
        return self.c(y[:, 9:10]) + y[:, 5].unsqueeze(1)


@pytest.mark.parametrize("how", ["slice", "select"])
def test_constant_slice_bounds_give_a_correct_pruned_model(how):
    # Only the channels that no fixed bound depends on may go: the ones after them.
    model, x = ConstantSlice(how), torch.randn(4, 3)
    result = st.prune_channels(model, x, 0.5, round_to=None)
    assert result.model.a.out_features < 16
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), model(x))
    assert any("sliced at fixed positions" in w for w in result.warnings)


class SelectToken(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 8)
        self.c = nn.Linear(8, 2)

    def forward(self, x):
        return self.c(self.a(x)[:, 0])  # the first token of [B, T, C]


def test_select_along_another_dim_keeps_the_channels_coupled():
    model = SelectToken()
    graph, ctx = context(model, torch.randn(2, 5, 3))
    sel = node(graph, "select.int")
    assert space(ctx, sel.args[0].tid, 2) == space(ctx, sel.outputs[0], 1)
    assert [ctx.atoms.size[a] for (a,) in space(ctx, sel.args[0].tid, 1)] == [1, 4]
    group = only_group(build_groups(model, graph))
    assert (group.size, group.modules) == (8, ["a"])
    assert ("c.weight", 1, 0, (8,), 0) in members(group)


# -- view / reshape / flatten / permute / transpose ----------------------------------------------
class Flatten(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.c = nn.Linear(4 * 3 * 2, 2)

    def forward(self, x):
        return self.c(self.a(x).flatten(1))


def test_flatten_makes_the_consumer_dim_a_product_with_channels_outermost():
    group = only_group(groups_of(Flatten(), torch.randn(1, 3, 3, 2)))
    assert group.size == 4
    assert ("c.weight", 1, 0, (4, 3, 2), 0) in members(group)


class ChannelsLast(nn.Module):
    """ConvNeXt style: permute to channels-last, LayerNorm and Linear, permute back."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 8)
        self.c = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = self.fc(self.norm(self.a(x).permute(0, 2, 3, 1)))
        return self.c(y.permute(0, 3, 1, 2))


def test_permute_carries_channels_to_the_new_position():
    gset = groups_of(ChannelsLast(), torch.randn(1, 3, 4, 4))
    assert summary(gset) == [(8, ("a",), False), (8, ("fc",), True)]
    assert {("norm.weight", 0, 0, (8,), 0), ("fc.weight", 1, 0, (8,), 0)} <= members(
        group_of(gset, "a")
    )
    assert ("c.weight", 1, 0, (8,), 0) in members(group_of(gset, "fc"))


class Transpose(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(3, 8, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):  # [B, C, T] -> [B, T, C]
        return self.fc(self.a(x).transpose(1, 2))


def test_transpose_carries_channels_to_the_last_dim():
    model = Transpose()
    graph, ctx = context(model, torch.randn(2, 3, 5))
    tr = node(graph, "transpose.int")
    assert space(ctx, tr.args[0].tid, 1) == space(ctx, tr.outputs[0], 2)
    assert space(ctx, tr.args[0].tid, 2) == space(ctx, tr.outputs[0], 1)
    group = only_group(build_groups(model, graph))
    assert members(group) == {
        ("a.weight", 0, 0, (8,), 0),
        ("a.bias", 0, 0, (8,), 0),
        ("fc.weight", 1, 0, (8,), 0),
    }


class Heads(nn.Module):
    """Multi-head attention written out: reshape into heads x head_dim, sdpa, merge back."""

    def __init__(self, heads=3, kv_heads=3, head_dim=4):
        super().__init__()
        self.shape = (heads, kv_heads, head_dim)
        self.q = nn.Linear(8, heads * head_dim)
        self.k = nn.Linear(8, kv_heads * head_dim)
        self.v = nn.Linear(8, kv_heads * head_dim)
        self.o = nn.Linear(heads * head_dim, 8)

    def forward(self, x):
        b, t, _ = x.shape
        heads, kv_heads, d = self.shape
        q = self.q(x).view(b, t, heads, d).transpose(1, 2)
        k = self.k(x).view(b, t, kv_heads, d).transpose(1, 2)
        v = self.v(x).view(b, t, kv_heads, d).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, enable_gqa=heads != kv_heads)
        return self.o(y.transpose(1, 2).reshape(b, t, heads * d))


def test_reshape_into_heads_factors_the_hidden_dim():
    model = Heads()
    graph, ctx = context(model, torch.randn(2, 5, 8))
    hidden = space(ctx, param_tid(graph, "q.weight"), 0)
    assert [[ctx.atoms.size[a] for a in seg] for seg in hidden] == [[3, 4]]
    heads, head_dim = hidden[0]
    assert ctx.atoms.has(head_dim, "score")  # frozen by build_groups unless factor="inner"
    assert ctx.atoms.find(head_dim) not in ctx.atoms.frozen
    assert ctx.atoms.find(heads) not in ctx.atoms.frozen


def test_sdpa_couples_q_k_v_and_output_heads():
    gset = groups_of(Heads(), torch.randn(2, 5, 8))
    group = only_group(gset)
    assert (group.size, group.modules, group.exact) == (3, ["k", "q", "v"], True)
    assert members(group) == {
        (f"{p}.{kind}", 0, 0, (3, 4), 0) for p in "qkv" for kind in ("weight", "bias")
    } | {("o.weight", 1, 0, (3, 4), 0)}
    assert gset.frozen["q"] == HEAD_DIM
    assert gset.frozen["v"] == INNER


def test_sdpa_with_factor_inner_prunes_qk_head_dim_and_v_head_dim_apart():
    model = Heads()
    graph = trace(model, torch.randn(2, 5, 8), grad=True)
    gset = build_groups(model, graph, "inner")
    assert summary(gset) == [(4, ("k", "q"), False), (4, ("v",), True)]
    qk, v = gset.groups
    assert ("q.weight", 0, 0, (3, 4), 1) in members(qk)  # head_dim is factor 1 of 3 x 4
    assert ("o.weight", 1, 0, (3, 4), 1) in members(v)  # v's head_dim goes with o's input


def test_sdpa_grouped_query_attention_prunes_kv_heads_with_their_query_heads():
    gset = groups_of(Heads(heads=4, kv_heads=2), torch.randn(1, 3, 8))
    group = only_group(gset)
    assert (group.size, group.modules) == (2, ["k", "q", "v"])
    assert {("q.weight", 0, 0, (2, 2, 4), 0), ("k.weight", 0, 0, (2, 4), 0)} <= members(group)
    assert ("o.weight", 1, 0, (2, 2, 4), 0) in members(group)


def channel_shuffle(x, groups):
    b, c, h, w = x.shape  # torchvision's: fixed groups, width from the shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class Shuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 16, 1)
        self.c = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        return self.c(channel_shuffle(self.a(x), 2))


def test_channel_shuffle_interleaves_the_consumer_positions():
    group = only_group(groups_of(Shuffle(), torch.randn(1, 3, 4, 4)))
    assert group.size == 2  # the outer factor: the shuffle's groups
    assert members(group) == {
        ("a.weight", 0, 0, (2, 8), 0),
        ("a.bias", 0, 0, (2, 8), 0),
        ("c.weight", 1, 0, (8, 2), 1),
    }


def test_channel_shuffle_with_constant_groups_is_kept_not_silently_wrong():
    # The rules prune whole shuffle groups, but this forward keeps groups=2 and halves the
    # width: the pruned model would reorder channels. The output check catches it.
    model, x = Shuffle(), torch.randn(1, 3, 4, 4)
    result = st.prune_channels(model, x, 0.5, round_to=None)
    assert result.model.a.out_channels == 16
    assert any(
        "kept channels of 'a'" in w and "changed the model's outputs" in w for w in result.warnings
    ), result.warnings
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), model(x))


# -- pooling and reductions ----------------------------------------------------------------------
class Pool(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3)
        self.m = nn.Conv2d(8, 6, 1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        y = self.m(F.max_pool2d(self.a(x), 2))
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


def test_pooling_keeps_channels_coupled_exactly():
    gset = groups_of(Pool(), torch.randn(1, 3, 8, 8))
    assert summary(gset) == [(6, ("m",), True), (8, ("a",), True)]
    assert ("m.weight", 1, 0, (8,), 0) in members(group_of(gset, "a"))
    assert ("fc.weight", 1, 0, (6,), 0) in members(group_of(gset, "m"))


class Reduce(nn.Module):
    def __init__(self, over_channels):
        super().__init__()
        self.over_channels = over_channels
        self.a = nn.Conv2d(3, 8, 1)
        self.c = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = self.a(x)
        if self.over_channels:
            return self.c(y / y.sum(1, keepdim=True))
        return self.c(y.mean((2, 3), keepdim=True))


@pytest.mark.parametrize("over_channels, exact", [(False, True), (True, False)])
def test_reductions_couple_kept_dims_and_mark_reduced_ones(over_channels, exact):
    model = Reduce(over_channels)
    graph, ctx = context(model, torch.randn(1, 3, 4, 4))
    red = next(n for n in graph.nodes if n.packet in (aten.sum, aten.mean))
    assert space(ctx, red.args[0].tid, 1) == space(ctx, graph.nodes[0].outputs[0], 1)
    if not over_channels:
        assert space(ctx, red.args[0].tid, 1) == space(ctx, red.outputs[0], 1)
    group = only_group(build_groups(model, graph))
    assert (group.size, group.exact) == (8, exact)
    assert ("c.weight", 1, 0, (8,), 0) in members(group)


# -- embedding -------------------------------------------------------------------------------------
class Embed(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.fc = nn.Linear(6, 2)

    def forward(self, idx):
        return self.fc(self.emb(idx))


def test_embedding_produces_its_feature_dim_not_the_vocabulary():
    group = only_group(groups_of(Embed(), torch.tensor([[1, 2, 3]])))
    assert (group.size, group.modules) == (6, ["emb"])
    assert members(group) == {("emb.weight", 1, 0, (6,), 0), ("fc.weight", 1, 0, (6,), 0)}
    assert roles(group)["emb.weight", 1] == {"produce"}


# -- what is not handled ---------------------------------------------------------------------------
class Cumsum(nn.Module):
    def forward(self, x):
        return x.cumsum(-1)


class NoRule(nn.Module):
    def __init__(self, mix):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.mix = mix
        self.c = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.c(self.mix(self.a(x)))


def test_op_without_a_rule_freezes_and_names_the_op_and_module():
    assert rule_for(aten.cumsum.default) is None
    model, x = NoRule(Cumsum()), torch.randn(1, 3, 4, 4)
    graph, ctx = context(model, x)
    op = node(graph, "cumsum")
    reason = (
        "no dimension rule (op cumsum in module 'mix'); give it one with "
        "@slimtorch.register_rule(torch.ops.aten.cumsum)"
    )
    for tid in (*op.inputs, *op.outputs):
        for dim in range(4):
            assert all(ctx.atoms.frozen[a] == reason for seg in space(ctx, tid, dim) for a in seg)
    gset = build_groups(model, graph)
    assert gset.groups == [] and gset.frozen["a"] == reason


def test_index_select_freezes_the_gathered_dim():
    class Permute(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("order", torch.arange(7, -1, -1))

        def forward(self, x):
            return x.index_select(1, self.order)

    gset = groups_of(NoRule(Permute()), torch.randn(1, 3, 4, 4))
    assert gset.groups == []
    assert gset.frozen["a"] == "index_select with a fixed index in 'mix'"


class MHA(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        h = self.inp(x)
        return self.out(self.attn(h, h, h, need_weights=False)[0])


def test_fused_multi_head_attention_freezes_and_says_to_trace_with_grad():
    gset = groups_of(MHA(), torch.randn(1, 3, 4), grad=False)
    assert gset.groups == []
    assert gset.frozen["inp"] == (
        "fused attention kernel hides its projections; trace with grad=True "
        "(op _native_multi_head_attention in module 'attn')"
    )
    gset = groups_of(MHA(), torch.randn(1, 3, 4), grad=True)
    assert gset.groups == []
    assert gset.frozen["inp"] == "nn.MultiheadAttention 'attn' ties heads to its embed_dim"


def test_model_inputs_and_outputs_are_frozen():
    model = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 3))
    graph, ctx = context(model, torch.randn(2, 4))
    for dim in (0, 1):
        (a,) = space(ctx, graph.inputs[0], dim)[0]
        assert ctx.atoms.frozen[a] == "dimension of a model input"
    (a,) = space(ctx, graph.outputs[0], 1)[0]
    assert ctx.atoms.frozen[a] == OUTPUT
    assert ctx.atoms.frozen[space(ctx, graph.outputs[0], 0)[0][0]] == "dimension of a model input"


# -- extending the registry from outside ---------------------------------------------------
@torch.library.custom_op("slimtorch_tests::scale", mutates_args=())
def _scale(x: torch.Tensor, factor: float) -> torch.Tensor:
    return x * factor


@torch.library.custom_op("slimtorch_tests::shift", mutates_args=())
def _shift(x: torch.Tensor, by: float) -> torch.Tensor:  # never given a rule
    return x + by


class CustomOp(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.op = op

    def forward(self, x):
        return self.op(x, 2.0)


def test_register_rule_makes_a_custom_op_prunable():
    # Registration is global and cannot be undone: the "before" half must run first.
    scale = torch.ops.slimtorch_tests.scale
    model, x = NoRule(CustomOp(scale)), torch.randn(1, 3, 4, 4)
    assert rule_for(scale.default) is None
    gset = groups_of(model, x)
    assert gset.groups == []
    assert gset.frozen["a"].startswith(
        "no dimension rule (op slimtorch_tests.scale in module 'mix'); give it one with "
        "@slimtorch.register_rule(torch.ops.slimtorch_tests.scale)"
    )

    @st.register_rule(scale)
    def _scale_rule(ctx, node):
        ctx.identity(node.args[0], node.outputs[0])

    assert rule_for(scale.default) is _scale_rule  # the packet covers its overloads
    group = only_group(groups_of(model, x))
    assert (group.size, group.modules, group.exact) == (8, ["a"], True)
    assert members(group) == {
        ("a.weight", 0, 0, (8,), 0),
        ("a.bias", 0, 0, (8,), 0),
        ("c.weight", 1, 0, (8,), 0),
    }
    result = st.prune_channels(model, x, 0.5, round_to=None)
    assert (result.model.a.out_channels, result.model.c.in_channels) == (4, 4)
    check_pruned(model, result, torch.randn(2, 3, 4, 4))


def test_missing_rule_reason_says_how_to_register_one():
    gset = groups_of(NoRule(CustomOp(torch.ops.slimtorch_tests.shift)), torch.randn(1, 3, 4, 4))
    assert "slimtorch_tests.shift" in gset.frozen["a"]
    assert "@slimtorch.register_rule(torch.ops.slimtorch_tests.shift)" in gset.frozen["a"]


class StackPaths(nn.Module):
    """Two conv paths stacked and summed over the new dim (SKNet's selective kernel)."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.out = (
            nn.Conv2d(3, 8, 1),
            nn.Conv2d(3, 8, 3, padding=1),
            nn.Conv2d(8, 2, 1),
        )

    def forward(self, x):
        paths = torch.stack([self.a(x), self.b(x)], dim=1)  # (N, 2, 8, H, W)
        return self.out((1 - paths.sigmoid()).sum(1))  # rsub: 1 - x


def test_stack_couples_its_inputs_channels_and_rsub_is_elementwise():
    model = StackPaths()
    gset = groups_of(model, torch.randn(2, 3, 6, 6))
    assert summary(gset) == [(8, ("a", "b"), True)]
    assert ("out.weight", 1, 0, (8,), 0) in members(only_group(gset))
    r = st.prune_channels(model.eval(), torch.randn(2, 3, 6, 6), 0.5, round_to=None)
    check_pruned(model, r, torch.randn(2, 3, 6, 6))


def test_boolean_mask_index_keeps_the_trailing_channels_prunable():
    """``h[mask]`` with a (B, T) mask on (B, T, C) gives (N, C): the mask consumes two dims
    (deepseek_v4 and higgs_audio_v2 crashed the rule that assumed one per index)."""

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(8, 32), nn.Linear(32, 4)

        def forward(self, x):
            h = torch.relu(self.fc1(x))
            return self.fc2(h[x[..., 0] > -10]).sum(0)

    torch.manual_seed(0)
    model, x = Masked(), torch.randn(2, 5, 8)
    result = st.prune_channels(model, x, ratio=0.5, round_to=None)
    assert result.model.fc1.out_features == 16
    check_pruned(model, result, x)


def test_integer_index_with_a_broadcast_index_rank():
    class Gather(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(8, 32), nn.Linear(32, 4)

        def forward(self, x):
            idx = torch.tensor([[0, 2], [1, 3]])
            return self.fc2(torch.relu(self.fc1(x))[idx]).sum((0, 1, 2))

    torch.manual_seed(0)
    model, x = Gather(), torch.randn(4, 6, 8)
    result = st.prune_channels(model, x, ratio=0.5, round_to=None)
    assert result.model.fc1.out_features == 16
    check_pruned(model, result, x)


class _Experts(nn.Module):
    """A mixture-of-experts FFN as transformers 5 runs it: tokens sorted by expert, then
    ``torch._grouped_mm`` over (experts, in, out) weights."""

    def __init__(self, experts=2, hidden=16, inner=32):
        super().__init__()
        self.up = nn.Parameter(torch.randn(experts, hidden, inner) / hidden**0.5)
        self.down = nn.Parameter(torch.randn(experts, inner, hidden) / inner**0.5)
        self.head = nn.Linear(hidden, 4)

    def forward(self, x):
        offs = torch.tensor([x.shape[0] // 2, x.shape[0]], dtype=torch.int32)
        h = torch.relu(torch._grouped_mm(x, self.up, offs=offs))
        return self.head(torch._grouped_mm(h, self.down, offs=offs) + x)


def test_grouped_mm_prunes_the_experts_inner_width():
    torch.manual_seed(0)
    model, x = _Experts(), torch.randn(8, 16)
    result = st.prune_channels(model, x, ratio=0.5, ignore=["head"])
    pruned = result.model
    assert pruned.up.shape == (2, 16, 16) and pruned.down.shape == (2, 16, 16)
    check_pruned(model, result, x)


def test_grouped_mm_macs_are_those_of_the_per_expert_products():
    model, x = _Experts(), torch.randn(8, 16)
    # 8 tokens x 32 inner x 16 hidden, twice, plus the 16 -> 4 head
    assert st.analyze(model, x).macs == 2 * 8 * 16 * 32 + 8 * 16 * 4


@pytest.mark.parametrize("reduce", ["max", "argmax"])
def test_max_over_tokens_keeps_channels_prunable(reduce):
    class Pool(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(8, 32), nn.Linear(32, 4)

        def forward(self, x):
            h = torch.relu(self.fc1(x))
            if reduce == "max":
                return self.fc2(h.max(dim=1).values)
            return self.fc2(h.mean(1)) + h.argmax(dim=1).float().mean()

    torch.manual_seed(0)
    model, x = Pool(), torch.randn(2, 5, 8)
    result = st.prune_channels(model, x, ratio=0.5, round_to=None)
    assert result.model.fc1.out_features == 16
    if reduce == "max":  # argmax of pruned channels is a different number: inexact
        check_pruned(model, result, x)


def test_grouped_mm_widths_stay_multiples_of_16_bytes():
    """Its CPU kernel refuses rows that are not multiples of 16 bytes: 32 * 0.7 -> 12, not 10."""
    torch.manual_seed(0)
    model, x = _Experts(), torch.randn(8, 16)
    result = st.prune_channels(model, x, ratio=0.7, ignore=["head"], round_to=None)
    assert result.model.up.shape == (2, 16, 12)
    check_pruned(model, result, x)


def test_topk_and_gather_keep_the_other_dims_prunable():
    """A router's pattern: top-k tokens per channel, gathered back (MoE gates, token pruning)."""

    class TopTokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(8, 32), nn.Linear(32, 4)

        def forward(self, x):
            h = torch.relu(self.fc1(x))  # (B, T, C)
            idx = h.topk(3, dim=1).indices  # (B, 3, C)
            return self.fc2(h.gather(1, idx).mean(1))

    torch.manual_seed(0)
    model, x = TopTokens(), torch.randn(2, 6, 8)
    result = st.prune_channels(model, x, ratio=0.5, round_to=None)
    assert result.model.fc1.out_features == 16
    check_pruned(model, result, x)
