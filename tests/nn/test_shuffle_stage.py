"""PrunableShuffleStage is the exact twin of a torchvision ShuffleNetV2 stage, and prunes."""

import pytest
import torch
from torch import nn
from torchvision.models import shufflenetv2

import slimtorch as st
from slimtorch.errors import ConfigError
from slimtorch.graph.groups import build_groups, register_sized_split
from slimtorch.graph.trace import trace
from slimtorch.nn import PieceBatchNorm, PrunableShuffleStage, build_module, module_config
from slimtorch.nn.shuffle_stage import shuffle_routes
from slimtorch.prune.channels.twins import swap_twins_


def _informative_(model):
    """Random BatchNorm statistics, so a wrong channel order shows in the output."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


@pytest.mark.parametrize("half, repeats", [(24, 4), (58, 8), (61, 4), (5, 3)])
def test_routes_cover_every_row_once_in_contiguous_pieces(half, repeats):
    r = shuffle_routes(half, repeats)
    rows = {(p, i) for p, a, b in r["pieces"] for i in range(a, b)}
    assert len(rows) == sum(b - a for _, a, b in r["pieces"]) == half * (repeats + 1)
    assert len(r["reads"]) == repeats and all(len(x) == half for x in r["reads"][1:])
    assert len(r["out"]) == 2 * half
    read = [lb for x in r["reads"] for lb in x]
    assert len(set(read) | set(r["out"])) == len(read) + len(r["out"])  # each row read once


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0"])
def test_twin_stages_chain_to_the_same_output(name):
    torch.manual_seed(0)
    model = _informative_(shufflenetv2.__dict__[name]())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        h = model.maxpool(model.conv1(x))
        order = None
        for stage in (model.stage2, model.stage3, model.stage4):
            twin = PrunableShuffleStage.from_torchvision(stage, order).eval()
            ref, out = stage(h), twin(h if order is None else h[:, order])
            order = twin.output_order()
            torch.testing.assert_close(out, ref[:, order], rtol=0, atol=1e-5)
            h = ref


def test_whole_model_twin_is_exact_and_leaves_no_shuffle():
    model = _informative_(shufflenetv2.shufflenet_v2_x0_5())
    x = torch.randn(2, 3, 64, 64)
    before = model(x).detach()
    assert {"transpose.int", "split.Tensor"} <= {n.name for n in trace(model, x).nodes}
    assert swap_twins_(model, x) == ["stage2", "stage3", "stage4", "conv5.0"]
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=0, atol=1e-5)
    ops = {n.name for n in trace(model, x).nodes}
    assert not {"transpose.int", "split.Tensor"} & ops  # the shuffles and chunks are gone


def test_every_inter_block_channel_prunes(tmp_path):
    model = _informative_(shufflenetv2.shufflenet_v2_x1_0())
    x = torch.randn(2, 3, 64, 64)
    r = st.prune_channels(model, x, ratio=0.5)
    assert r.plan["swapped"][:3] == ["stage2", "stage3", "stage4"]
    assert [w for w in r.warnings if "stage" in w] == []
    assert r.after["macs"] / r.before["macs"] <= 0.45  # 0.462 before the twin
    stage = r.model.stage3
    kept = [n.num_features for n in stage.branches[3][-1].norms]
    assert sum(kept) < model.stage3[4].branch2[6].num_features  # 116 before
    path = tmp_path / "shuffle.slim"
    st.save(r.model, path)
    with torch.no_grad():
        torch.testing.assert_close(st.load(path)(x), r.model(x), rtol=0, atol=0)


def test_piece_batchnorm_sizes_follow_its_norms():
    m = PieceBatchNorm([3, 5], relu=False).eval()
    again = build_module("PieceBatchNorm", module_config(m))
    assert [n.num_features for n in again.norms] == [3, 5]
    parts = m(torch.randn(2, 8, 4, 4))
    assert [p.shape[1] for p in parts] == [3, 5]


class _Sized(nn.Module):
    """A split whose sizes are read off its own parameters."""

    def __init__(self):
        super().__init__()
        self.scale = nn.ParameterList([nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(5))])

    def forward(self, y):
        parts = y.split([p.shape[0] for p in self.scale], 1)
        return [p * s.view(1, -1, 1, 1) for p, s in zip(parts, self.scale)]


class _UsesSized(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.parts, self.c = nn.Conv2d(3, 8, 1), _Sized(), nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.c(torch.cat(self.parts(self.a(x)), 1))


def test_a_registered_sized_split_lets_each_part_prune_alone():
    x = torch.randn(1, 3, 4, 4)
    gset = build_groups(_UsesSized(), trace(_UsesSized(), x))
    assert gset.groups == [] and "fixed unequal sizes [3, 5]" in gset.frozen["a"]
    register_sized_split(_Sized)
    gset = build_groups(_UsesSized(), trace(_UsesSized(), x))
    assert sorted(g.size for g in gset.groups) == [3, 5]


def test_a_stage_that_is_not_shufflenet_is_refused():
    with pytest.raises(ConfigError, match="not a torchvision ShuffleNetV2 stage"):
        PrunableShuffleStage.from_torchvision(nn.Sequential(nn.Conv2d(3, 3, 1)))
