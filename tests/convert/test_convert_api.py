"""convert(): the input stays untouched, edits are recorded and rebuild the model, auto mode."""

import copy

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import slimtorch as st
from slimtorch.convert import conversion_kinds, convert
from slimtorch.edit import edits_of, replace_module_
from slimtorch.nn import build_module

KINDS = [
    ("depthwise_separable", {"rank": 2}),
    ("grouped", {"groups": 4}),
    ("dilated", {}),
    ("low_rank", {"energy": 0.9}),
    ("fuse_bn", {}),
]


def test_every_kind_is_covered():
    assert sorted(k for k, _ in KINDS) == conversion_kinds()


@pytest.mark.parametrize("kind,options", KINDS)
def test_edits_rebuild_the_converted_model(trained, calib, kind, options):
    before = copy.deepcopy(trained.state_dict())
    result = convert(trained, kind, example_inputs=calib, **options)
    # The input model is untouched.
    assert edits_of(trained) == []
    for k, v in trained.state_dict().items():
        assert torch.equal(v, before[k])
    # Its edits, replayed on a fresh copy, rebuild the architecture; the weights then load.
    edits = edits_of(result.model)
    assert len(edits) >= len(result.layers) > 0
    fresh = copy.deepcopy(trained)
    for edit in edits:
        replace_module_(fresh, edit["module"], build_module(edit["type"], edit["config"]))
    fresh.load_state_dict(result.model.state_dict())
    with torch.no_grad():
        assert_close(fresh.eval()(calib), result.model(calib))
    graph = st.trace(result.model, calib)  # converted models stay traceable
    assert graph.tensors[graph.outputs[0]].shape == (len(calib), 10)
    table = result.table()
    assert all(r.name in table for r in result.layers) and "rel err" in table
    assert result.to_dict()["kind"] == kind


def test_max_error_leaves_layers_alone(trained, calib):
    result = convert(trained, "low_rank", example_inputs=calib, rank=0.25, max_error=0.3)
    assert all(r.error <= 0.3 for r in result.layers)
    over = [s for s in result.skipped if "max_error 0.3" in s.reason]
    assert over and len(over) + len(result.layers) == 6


class Mixed(nn.Module):
    """A big conv that a low rank speeds up a lot, and a tiny Linear it can only slow down."""

    def __init__(self) -> None:
        super().__init__()
        self.big = nn.Conv2d(128, 128, 3, padding=1)
        self.tiny = nn.Linear(8, 8)

    def forward(self, x):
        return self.big(x).mean((2, 3))[:, :8] + self.tiny(x[:, :8, 0, 0])


def test_auto_keeps_only_measured_speedups():
    model = Mixed().eval()
    x = torch.randn(1, 128, 24, 24)
    result = convert(model, "low_rank", "auto", x, rank=0.1, threads=[1])
    assert [r.name for r in result.layers] == ["big"]
    assert result.layers[0].latency_ms[1][1] < result.layers[0].latency_ms[1][0]
    (skip,) = result.skipped
    assert skip.name == "tiny" and "faster" in skip.reason and "ms at 1 thread" in skip.reason
    assert "best ms @1t" in result.table()


@pytest.mark.parametrize(
    "kind,options", [("depthwise_separable", {"rank": 2}), ("grouped", {"groups": 2})]
)
def test_slim_round_trip(tmp_path, kind, options):
    slim = pytest.importorskip("slimtorch.io.slim")
    model = st.load_model("torchvision:resnet18").eval()
    x = torch.randn(1, 3, 32, 32)
    layers = ["layer1.0.conv1", "layer2.0.conv2", "layer3.1.conv1"]
    result = convert(model, kind, layers, x, **options)
    path = slim.save(result.model, tmp_path / "m.slim")
    loaded = slim.load(path).eval()
    assert type(loaded.layer2[0].conv2) is type(result.model.layer2[0].conv2)
    with torch.no_grad():
        assert_close(loaded(x), result.model(x))
