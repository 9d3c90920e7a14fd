"""sensitivity: one layer at a time, model untouched, table/plot, allocation to a target."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from slimtorch.errors import ConfigError, PruneError
from slimtorch.prune.weights.api import prune_weights_
from slimtorch.prune.weights.sensitivity import SensitivityResult, sensitivity
from slimtorch.prune.weights.stats import sparsity


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny ops on a shared 2-core machine: more threads only add contention (4x slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def trained():
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32) / 16
    y = torch.tensor(y)
    net = nn.Sequential(
        nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(3):
        for i in range(0, 1400, 50):
            loss = nn.functional.cross_entropy(net(x[i : i + 50]), y[i : i + 50])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval(), x[1400:], y[1400:]


def _accuracy(x, y):
    def fn(model):
        with torch.no_grad():
            return (model(x).argmax(1) == y).float().mean().item()

    return fn


def test_model_unchanged_and_metrics_match_pruning_one_layer(trained):
    net, x, y = trained
    before = copy.deepcopy(net.state_dict())
    result = sensitivity(net, _accuracy(x, y), sparsities=[0.9, 0.5, 0.99])
    assert not any(parametrize.is_parametrized(m) for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert result.sparsities == (0.5, 0.9, 0.99)
    assert list(result.metrics) == ["0", "2", "4"]
    assert result.sizes == {"0": 4096, "2": 2048, "4": 320}
    assert result.baseline == pytest.approx(_accuracy(x, y)(net)) and result.baseline > 0.85
    for layer in ("0", "4"):
        for s, metric in zip(result.sparsities, result.metrics[layer]):
            work = copy.deepcopy(net)
            prune_weights_(work, {layer: s})
            assert metric == pytest.approx(_accuracy(x, y)(work))
    assert result.drop("4")[-1] > result.drop("4")[0]  # 99% hurts more than 50%


def test_table_and_plot(trained, tmp_path):
    net, x, y = trained
    result = sensitivity(net, _accuracy(x, y), sparsities=[0.5, 0.9], layers=["0", "4"])
    lines = result.table().splitlines()
    assert lines[0].startswith("metric with one layer pruned (dense: ")
    assert lines[1].split() == ["layer", "weights", "50%", "90%"]
    assert [line.split()[0] for line in lines[3:]] == ["0", "4"]
    path = result.plot(tmp_path / "sens.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_allocate_scales_tolerated_sparsities_to_the_target():
    result = SensitivityResult(
        baseline=0.9,
        sparsities=(0.5, 0.7, 0.9),
        metrics={"a": (0.9, 0.9, 0.89), "b": (0.9, 0.85, 0.5), "c": (0.7, 0.9, 0.9)},
        sizes={"a": 1000, "b": 1000, "c": 2000},
    )
    assert [result.tolerated(n, 0.02) for n in "abc"] == [0.9, 0.5, 0.0]
    ratios = result.allocate(0.35, tolerance=0.02)
    assert ratios["c"] == 0.0  # "c" dropped at 50%: its lucky 70-90% points are not trusted
    assert ratios["a"] / ratios["b"] == pytest.approx(0.9 / 0.5)
    total = sum(ratios[n] * result.sizes[n] for n in "abc") / 4000
    assert total == pytest.approx(0.35, abs=1e-6)
    capped = result.allocate(0.4, tolerance=0.02)  # a is clipped at 0.9, b fills the rest
    assert capped["a"] == pytest.approx(0.9) and capped["b"] == pytest.approx(0.7)
    with pytest.raises(PruneError, match="target 0.5 is unreachable.*raise tolerance"):
        result.allocate(0.5, tolerance=0.02)
    with pytest.raises(ConfigError, match="tolerance=-1"):
        result.allocate(0.3, tolerance=-1)


def test_allocation_plugs_into_prune_weights(trained):
    net, x, y = trained
    result = sensitivity(net, _accuracy(x, y), sparsities=[0.5, 0.7, 0.9, 0.95])
    ratios = result.allocate(0.8, tolerance=0.05)
    work = copy.deepcopy(net)
    report = prune_weights_(work, ratios)
    assert report.total == pytest.approx(0.8, abs=0.01)
    assert sparsity(work).total == pytest.approx(0.8, abs=0.01)
    assert result.to_dict()["sparsities"] == [0.5, 0.7, 0.9, 0.95]


def test_loss_metric_and_bad_input(trained):
    net, x, y = trained

    def loss(model):
        with torch.no_grad():
            return nn.functional.cross_entropy(model(x), y).item()

    result = sensitivity(net, loss, sparsities=[0.9], layers=["4"], higher_is_better=False)
    assert result.drop("4")[0] > 0
    with pytest.raises(ConfigError, match=r"sparsities\[1\]=1.5 is outside"):
        sensitivity(net, loss, sparsities=[0.5, 1.5])
    with pytest.raises(ConfigError, match="layers names '44', which is not.*did you mean 4"):
        sensitivity(net, loss, layers=["44"])
    with pytest.raises(ConfigError, match="nothing to sweep"):
        sensitivity(net, loss, pattern="2:4")
