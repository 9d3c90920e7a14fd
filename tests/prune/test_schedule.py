"""Schedules: events at the right steps, exact sparsity at each, masks that only grow."""

import pytest
import torch
from torch import nn

from slimtorch.errors import ConfigError, PruneError
from slimtorch.prune.weights.schedule import AGP, Iterative, OneShot, agp_sparsity
from slimtorch.prune.weights.stats import sparsity


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny ops on a shared 2-core machine: more threads only add contention (4x slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _net():
    return nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))


def _digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.tensor(x, dtype=torch.float32) / 16, torch.tensor(y)


def test_agp_formula():
    kw = dict(final=0.9, initial=0.1, start=10, steps=4, every=5)
    assert agp_sparsity(0, **kw) == pytest.approx(0.1)  # before t0
    assert agp_sparsity(10, **kw) == pytest.approx(0.1)
    assert agp_sparsity(20, **kw) == pytest.approx(0.9 + (0.1 - 0.9) * 0.5**3)
    assert agp_sparsity(30, **kw) == pytest.approx(0.9)
    assert agp_sparsity(99, **kw) == pytest.approx(0.9)


def test_agp_events_follow_the_cubic_ramp():
    agp = AGP(_net(), 0.9, steps=6, every=3, start=2, initial=0.05)
    assert [t for t, _ in agp.events] == [2, 5, 8, 11, 14, 17, 20]
    for t, s in agp.events:
        assert s == pytest.approx(agp_sparsity(t, 0.9, 0.05, 2, 6, 3))
    gaps = [b - a for (_, a), (_, b) in zip(agp.events, agp.events[1:])]
    assert gaps == sorted(gaps, reverse=True)  # fast early, slow late


def test_agp_during_training_on_digits():
    x, y = _digits()
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    agp = AGP(net, 0.9, steps=5, every=8, start=4, ignore=["2"])
    previous = torch.zeros_like(net[0].weight, dtype=torch.bool)
    for t in range(60):
        i = (t * 32) % 1600
        loss = nn.functional.cross_entropy(net(x[i : i + 32]), y[i : i + 32])
        opt.zero_grad()
        loss.backward()
        opt.step()
        report = agp.step()
        zeros = net[0].weight == 0
        assert (zeros | ~previous).all()  # a zeroed weight never comes back
        previous = zeros
        if report is not None:
            assert t in dict(agp.events)
            target = agp.current_sparsity
            assert report["0"] == pytest.approx(target, abs=0.5 / net[0].weight.numel())
        elif t < 4:
            assert agp.current_sparsity == 0.0 and not zeros.any()
    assert agp.done and agp.current_sparsity == pytest.approx(0.9)
    assert len(agp.reports) == 6 and len(net[0].parametrizations.weight) == 1
    assert sparsity(net)["0"] == pytest.approx(0.9, abs=1e-3) and sparsity(net)["2"] == 0.0
    assert (net(x).argmax(1) == y).float().mean() > 0.8


def test_iterative_is_linear():
    net = _net()
    it = Iterative(net, 0.8, steps=4, every=10)
    assert it.events == [(0, 0.2), (10, 0.4), (20, 0.6000000000000001), (30, 0.8)]
    seen = []
    for _ in range(35):
        if (r := it.step()) is not None:
            seen.append(round(r.total, 3))
    assert seen == [0.2, 0.4, 0.6, 0.8]


def test_one_shot_at_a_step_and_per_layer_targets():
    net = _net()
    shot = OneShot(net, {"0": 0.5, "2": 0.25}, at=3)
    assert [shot.step() for _ in range(3)] == [None, None, None]
    report = shot.step()
    assert report.by_layer == {"0": 0.5, "2": 0.25}
    assert shot.step() is None and shot.done

    agp = AGP(_net(), {"0": 0.8, "2": 0.4}, steps=2, every=1)
    agp.step(), agp.step()
    assert agp.current_sparsity == pytest.approx({"0": 0.8 * 0.875, "2": 0.4 * 0.875})


def test_resume_from_state_dict():
    net = _net()
    agp = AGP(net, 0.8, steps=4, every=2)
    for _ in range(5):
        agp.step()
    again = AGP(net, 0.8, steps=4, every=2)
    again.load_state_dict(agp.state_dict())
    assert again.t == 5 and again.current_sparsity == agp.current_sparsity


def test_bad_schedules():
    with pytest.raises(ConfigError, match="steps=0 is invalid"):
        AGP(_net(), 0.9, steps=0, every=1)
    with pytest.raises(ConfigError, match="every=-1"):
        Iterative(_net(), 0.9, steps=2, every=-1)
    with pytest.raises(ConfigError, match=r"initial=1.5 is outside \[0, 1\]"):
        AGP(_net(), 0.9, steps=2, every=1, initial=1.5)
    with pytest.raises(ConfigError, match=r"sparsity=1.2 is outside \[0, 1\]"):
        OneShot(_net(), 1.2)
    with pytest.raises(ConfigError, match="not sparsity=/threshold="):
        OneShot(_net(), 0.5, threshold=0.1)
    with pytest.raises(ConfigError, match="fixes the sparsity"):
        Iterative(_net(), 0.5, steps=2, every=1, pattern="2:4")
    with pytest.raises(ConfigError, match="'00'.*did you mean 0"):
        AGP(_net(), 0.5, steps=2, every=1, ignore=["00"])
    with pytest.raises(PruneError, match="not a multiple of 4"):
        OneShot(nn.Linear(6, 4), 0.5, pattern="2:4")
