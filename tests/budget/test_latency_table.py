"""The latency table: shapes of the layers that run, a cache keyed by the machine, and a
prediction calibrated on a real measurement."""

import json

import pytest
import torch
import torchvision
from torch import nn

from slimtorch.budget import LatencyModel, LatencyTable, LayerShape, layer_shapes, machine_key


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    ).eval()  # fmt: skip


def test_layer_shapes_are_what_runs():
    model = torchvision.models.resnet18().eval()
    x = torch.randn(2, 3, 64, 64)
    shapes = layer_shapes(model, x)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert sorted(shapes) == sorted([*convs, "fc"])
    outs = {}
    hooks = [
        model.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: outs.setdefault(n, o))
        for n in shapes
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    for name, s in shapes.items():
        assert s.out_elements() == outs[name].numel(), name
    assert shapes["layer2.0.conv1"] == LayerShape(
        "conv2d", 64, 128, (2, 64, 16, 16), (3, 3), (2, 2), (1, 1), (1, 1), 1, False
    )


def test_table_is_cached_per_machine_and_reused(tmp_path):
    path = tmp_path / "t.json"
    table = LatencyTable(threads=1, path=path, rounds=3)
    shapes = layer_shapes(_net(), torch.randn(1, 3, 16, 16))
    first = table.layers_ms(shapes)
    assert first > 0 and table.measured == len(shapes) == 3
    data = json.loads(path.read_text())
    assert data["machine"] == machine_key(1) and len(data["entries"]) == 3
    again = LatencyTable(threads=1, path=path, rounds=3)
    assert again.layers_ms(shapes) == first and again.measured == 0  # read, not timed


@pytest.mark.parametrize("damage", ["other torch", "garbage", "negative"])
def test_a_cache_from_elsewhere_is_rebuilt_not_trusted(tmp_path, damage):
    path = tmp_path / "t.json"
    key = machine_key(1)
    if damage == "other torch":
        text = json.dumps({"machine": {**key, "torch": "1.0"}, "entries": {"x": 1.0}})
    elif damage == "garbage":
        text = "{not json"
    else:
        text = json.dumps({"machine": key, "entries": {"x": -1.0}})
    path.write_text(text)
    with pytest.warns(UserWarning, match="not used, and rebuilt"):
        table = LatencyTable(threads=1, path=path, rounds=3)
    assert table.entries == {}
    table.layers_ms(layer_shapes(_net(), torch.randn(1, 3, 16, 16)))
    assert json.loads(path.read_text())["machine"] == key


def test_prediction_of_the_reference_is_its_measurement(tmp_path):
    model, x = _net(), torch.randn(1, 3, 32, 32)
    lm = LatencyModel(LatencyTable(threads=1, path=tmp_path / "t.json", rounds=3), model, x)
    layers = lm.table.layers_ms(layer_shapes(model, x))
    assert lm.predict_ms(model) == pytest.approx(max(lm.reference_ms, layers))
    narrow = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )  # fmt: skip
    assert lm.predict_ms(narrow) > 0


def test_bad_threads_are_named():
    from slimtorch import ConfigError

    with pytest.raises(ConfigError, match="threads"):
        LatencyTable(threads=0)
