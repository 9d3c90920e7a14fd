"""Oracle 3: each conversion at full rank reproduces the outputs; error shrinks as rank grows."""

import itertools

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import slimtorch as st
from slimtorch.convert import convert
from slimtorch.convert.factorize import tucker2
from slimtorch.nn import DepthwiseSeparableConv2d, GroupedConv2d, LowRankLinear, TuckerConv2d

FULL = [
    ("depthwise_separable", {"rank": "full"}, ["conv1", "conv2", "conv3"]),
    ("depthwise_separable", {"rank": "full", "fit": "data"}, ["conv1", "conv2", "conv3"]),
    ("low_rank", {"rank": "full"}, ["conv1", "conv2", "conv3", "conv4", "fc1", "fc2"]),
    ("low_rank", {"energy": 1.0}, ["conv1", "conv2", "conv3", "conv4", "fc1", "fc2"]),
    (
        "low_rank",
        {"rank": "full", "fit": "data"},
        ["conv1", "conv2", "conv3", "conv4", "fc1", "fc2"],
    ),
    ("fuse_bn", {}, ["conv1", "conv2"]),
]


@pytest.mark.parametrize("kind,options,converted", FULL)
def test_full_rank_reproduces_trained_outputs(trained, calib, kind, options, converted):
    result = convert(trained, kind, example_inputs=calib, **options)
    assert [r.name for r in result.layers] == converted
    with torch.no_grad():
        assert_close(result.model(calib), trained(calib), rtol=1e-4, atol=1e-4)
    assert all(r.error < 1e-5 for r in result.layers)
    assert result.output_error < 1e-5


@pytest.mark.parametrize("fit", ["weight", "data"])
def test_depthwise_error_never_grows_with_rank(trained, calib, fit):
    errors = []
    for rank in range(1, 10):
        r = convert(trained, "depthwise_separable", ["conv2", "conv3"], calib, rank=rank, fit=fit)
        errors.append([row.error for row in r.layers] + [r.output_error])
    for before, after in itertools.pairwise(errors):
        assert all(a <= b + 1e-6 for a, b in zip(after, before)), (before, after)
    assert errors[-1][1] < 1e-5 and errors[0][1] > 0.1  # conv3 exact at rank 9 = 3*3


@pytest.mark.parametrize("fit", ["weight", "data"])
@pytest.mark.parametrize(
    "key,values", [("rank", [0.1, 0.3, 0.6, 1.0]), ("energy", [0.5, 0.9, 0.99, 1.0])]
)
def test_low_rank_error_never_grows(trained, calib, key, values, fit):
    errors = []
    for v in values:
        r = convert(trained, "low_rank", example_inputs=calib, fit=fit, **{key: v})
        errors.append([row.error for row in r.layers])
    for before, after in itertools.pairwise(errors):
        assert all(a <= b + 1e-6 for a, b in zip(after, before)), (before, after)
    assert max(errors[-1]) < 1e-5


def test_depthwise_data_fit_beats_weight_fit(trained, calib):
    layers = ["conv1", "conv2", "conv3"]
    for rank in (1, 3):
        weight = convert(trained, "depthwise_separable", layers, calib, rank=rank)
        data = convert(trained, "depthwise_separable", layers, calib, rank=rank, fit="data")
        for w, d in zip(weight.layers, data.layers):
            assert d.error < w.error and d.note.endswith("fit data")


def test_data_fit_beats_weight_fit_on_the_outputs(trained, calib):
    layers = ["conv4", "fc1", "fc2"]
    for rank in (2, 8):
        weight = convert(trained, "low_rank", layers, calib, rank=rank)
        data = convert(trained, "low_rank", layers, calib, rank=rank, fit="data")
        # Per layer the data fit is optimal on its input (the stacked errors need not be).
        for w, d in zip(weight.layers, data.layers):
            assert d.error <= w.error + 1e-6 and d.note.endswith("fit data")
    assert data.output_error < 0.5 * weight.output_error  # rank 8: 0.10 vs 0.30


@pytest.mark.parametrize("shape", [(40, 70), (70, 40)])
def test_gram_svd_path_matches_lapack(monkeypatch, shape):
    from slimtorch.convert import factorize

    a = torch.randn(*shape)
    exact = [factorize.truncated_svd(a, r) for r in (3, 40)]
    monkeypatch.setattr(factorize, "GRAM_FROM", 8)  # big-matrix path on a small one
    for (l0, r0), r in zip(exact, (3, 40)):
        left, right = factorize.truncated_svd(a, r)
        assert_close(left @ right, l0 @ r0, rtol=1e-4, atol=1e-4)
    assert_close(factorize.singular_values(a), torch.linalg.svdvals(a.double()))


def test_tucker_kernel_error_is_monotone_in_both_ranks():
    w = torch.randn(12, 10, 3, 3)

    def err(ri, ro):
        first, core, last = tucker2(w, ri, ro)
        return float((torch.einsum("or,rshw,si->oihw", last, core, first) - w).norm())

    grid = [[err(ri, ro) for ro in range(1, 13)] for ri in range(1, 11)]
    assert all(a >= b - 1e-5 for row in grid for a, b in itertools.pairwise(row))
    assert all(grid[i][j] >= grid[i + 1][j] - 1e-5 for i in range(9) for j in range(12))
    assert grid[-1][-1] < 1e-4


def test_block_types_and_params(trained, calib):
    r = convert(trained, "depthwise_separable", ["conv2"], calib, rank=2)
    block = r.model.conv2
    assert isinstance(block, DepthwiseSeparableConv2d) and block.multiplier == 2
    row = r.layers[0]
    assert row.params_after == 16 * 2 * 25 + 16 * 2 * 32 + 32
    assert row.macs_after == (16 * 2 * 25 + 16 * 2 * 32) * 8 * 8 * len(calib)
    r = convert(trained, "low_rank", ["fc1", "conv3"], calib, rank=4)
    assert isinstance(r.model.fc1, LowRankLinear) and r.model.fc1.rank == 4
    assert isinstance(r.model.conv3, TuckerConv2d) and r.model.conv3.rank_in == 4


def test_grouped_is_exact_when_block_diagonal_up_to_permutation():
    torch.manual_seed(1)
    cin, cout, g = 12, 16, 4
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    mask = torch.zeros(cout, cin)
    for j in range(g):
        mask[j * 4 : (j + 1) * 4, j * 3 : (j + 1) * 3] = 1
    mask = mask[torch.randperm(cout)][:, torch.randperm(cin)]
    with torch.no_grad():
        conv.weight.mul_(mask[:, :, None, None])
    model = nn.Sequential(conv, nn.ReLU()).eval()
    x = torch.randn(2, cin, 9, 9)
    result = convert(model, "grouped", example_inputs=x, groups=g)
    new = result.model[0]
    assert isinstance(new, GroupedConv2d) and new.groups == g
    assert new.permute_in is not None and new.permute_out is not None
    assert_close(result.model(x), model(x))
    assert result.layers[0].error < 1e-6 and result.layers[0].note.endswith("energy kept 100.0%")
    plain = convert(model, "grouped", example_inputs=x, groups=g, permute=False)
    assert plain.layers[0].error > 0.3  # contiguous groups lose most of it


def test_grouped_keeps_more_energy_than_contiguous_groups(trained, calib):
    searched = convert(trained, "grouped", ["conv3", "conv4"], calib, groups=2)
    plain = convert(trained, "grouped", ["conv3", "conv4"], calib, groups=2, permute=False)
    for s, p in zip(searched.layers, plain.layers):
        assert s.error <= p.error + 1e-6
        assert s.params_after == p.params_after < s.params_before


def test_dilated_covers_the_same_window_and_is_exact_on_tap_kernels():
    conv = nn.Conv2d(4, 6, 7, padding=3)
    taps = torch.zeros(7, 7)
    taps[::3, ::3] = 1
    with torch.no_grad():
        conv.weight.mul_(taps)
    model = nn.Sequential(conv).eval()
    x = torch.randn(2, 4, 20, 20)
    for fit in ("kernel", "data"):
        r = convert(model, "dilated", example_inputs=x, fit=fit)
        new = r.model[0]
        assert new.kernel_size == (3, 3) and new.dilation == (3, 3) and new.padding == (3, 3)
        assert_close(r.model(x), model(x), rtol=1e-4, atol=1e-4)
    rf_before = st.analyze(model, x).receptive_field
    assert st.analyze(r.model, x).receptive_field == rf_before


def test_dilated_data_fit_beats_kernel_fit_on_trained_weights(trained, digits):
    x = digits[0][:256]
    data = convert(trained, "dilated", ["conv2"], x, fit="data")
    kernel = convert(trained, "dilated", ["conv2"], x, fit="kernel")
    assert data.layers[0].error < kernel.layers[0].error
    assert data.model.conv2.dilation == (2, 2) and data.layers[0].params_after < 32 * 16 * 25
