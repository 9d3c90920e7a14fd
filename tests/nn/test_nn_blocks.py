import io

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import slimtorch as st
from slimtorch.errors import ConfigError
from slimtorch.nn import (
    ChannelPermute,
    ChannelShuffle,
    DepthwiseSeparableConv2d,
    GroupedConv2d,
    LowRankLinear,
    TuckerConv2d,
    build_module,
    module_config,
    repeat_channels,
)


@pytest.mark.parametrize("impl", ["separate", "expand", "multiplier"])
@pytest.mark.parametrize("m", [1, 3])
def test_depthwise_separable_counts_match_formulas(impl, m):
    cin, cout, k, h = 8, 12, 3, 10
    block = DepthwiseSeparableConv2d(cin, cout, k, padding=1, multiplier=m, impl=impl)
    r = st.analyze(block, torch.randn(1, cin, h, h))
    assert r.params == cin * m * k * k + cin * m * cout + cout
    assert r.macs == cin * m * k * k * h * h + cin * m * cout * h * h


@pytest.mark.parametrize("channels_last", [False, True])
def test_depthwise_separable_impls_compute_the_same_function(channels_last):
    block = DepthwiseSeparableConv2d(6, 10, (3, 5), stride=2, padding=(1, 2), multiplier=4)
    x = torch.randn(2, 6, 17, 15)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert isinstance(block.depthwise, nn.ModuleList) and len(block.depthwise) == 4
    d, p = block.factors()
    assert d.shape == (6, 4, 3, 5) and p.shape == (10, 6, 4)
    for impl, groups in (("expand", 24), ("multiplier", 6)):
        other = block.with_impl(impl)
        assert other.depthwise.groups == groups
        assert_close(other(x), block(x), rtol=1e-5, atol=1e-5)
        assert_close(other.factors()[0], d) and assert_close(other.factors()[1], p)


def test_repeat_channels_keeps_channels_last():
    x = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    y = repeat_channels(x, 3)
    assert torch.equal(y, x.repeat_interleave(3, 1))
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_grouped_counts_and_permutations():
    cin, cout, g, h = 8, 16, 4, 6
    perm_in, perm_out = torch.randperm(cin).tolist(), torch.randperm(cout).tolist()
    block = GroupedConv2d(cin, cout, 3, g, padding=1, in_perm=perm_in, out_perm=perm_out)
    r = st.analyze(block, torch.randn(1, cin, h, h))
    assert r.params == cout * (cin // g) * 9 + cout
    assert r.macs == cout * (cin // g) * 9 * h * h
    x = torch.randn(2, cin, h, h)
    assert_close(block(x), block.conv(x[:, perm_in])[:, perm_out])


def test_channel_shuffle_matches_torch_and_inverts():
    x = torch.randn(2, 12, 3, 3)
    assert_close(ChannelShuffle(3)(x), nn.ChannelShuffle(3)(x))
    assert_close(ChannelShuffle(4)(ChannelShuffle(3)(x)), x)


def test_bad_block_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match=r"groups=3 must divide both.*use one of \[1, 2, 4\]"):
        GroupedConv2d(8, 12, 3, groups=3)
    with pytest.raises(ConfigError, match="not a permutation"):
        ChannelPermute([0, 0, 1])
    with pytest.raises(ConfigError, match="impl='fast' is unknown"):
        DepthwiseSeparableConv2d(4, 4, 3, impl="fast")
    with pytest.raises(ConfigError, match="multiplier=0 is invalid"):
        DepthwiseSeparableConv2d(4, 4, 3, multiplier=0)


def test_low_rank_counts_match_formulas():
    r = st.analyze(LowRankLinear(40, 30, rank=5), torch.randn(3, 40))
    assert r.params == 5 * (40 + 30) + 30 and r.macs == 3 * 5 * (40 + 30)
    h = 8
    block = TuckerConv2d(16, 24, 3, rank_in=4, rank_out=6, padding=1)
    r = st.analyze(block, torch.randn(1, 16, h, h))
    assert r.params == 16 * 4 + 6 * 4 * 9 + 6 * 24 + 24
    assert r.macs == (16 * 4 + 4 * 6 * 9 + 6 * 24) * h * h


def _blocks() -> nn.Module:
    return nn.Sequential(
        DepthwiseSeparableConv2d(4, 8, 3, padding=1, multiplier=2),
        DepthwiseSeparableConv2d(8, 8, 3, padding=1, multiplier=2, impl="expand"),
        GroupedConv2d(8, 8, 3, 2, padding=1, shuffle=True, in_perm=[7, 6, 5, 4, 3, 2, 1, 0]),
        TuckerConv2d(8, 12, 3, rank_in=3, rank_out=5, padding=1, stride=2),
        TuckerConv2d(12, 6, 1, rank_in=2, rank_out=2),
        ChannelPermute([5, 4, 3, 2, 1, 0]),
        nn.Flatten(),
        LowRankLinear(6 * 4 * 4, 10, rank=3),
    ).eval()


def test_blocks_rebuild_from_config_and_trace():
    model = _blocks()
    x = torch.randn(2, 4, 8, 8)
    h = x
    for module in model:
        if isinstance(module, nn.Flatten):
            h = module(h)
            continue
        rebuilt = build_module(type(module).__name__, module_config(module)).eval()
        rebuilt.load_state_dict(module.state_dict())
        assert repr(rebuilt) == repr(module)
        assert_close(rebuilt(h), module(h))
        h = module(h)
    graph = st.trace(model, x)
    assert graph.tensors[graph.outputs[0]].shape == (2, 10)


def test_blocks_export_to_onnx_and_run_in_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = _blocks()
    x = torch.randn(2, 4, 8, 8)
    buf = io.BytesIO()
    program = torch.onnx.export(model, (x,), dynamo=True, verbose=False)
    program.save(buf)
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert_close(torch.from_numpy(out), model(x), rtol=1e-4, atol=1e-5)
