"""The latency allocator: a greedy knapsack over channel groups (pure, tested with a cost
function of our own), the layer curves it reads (timed), and its use by prune_channels."""

import pytest
import torch
from torch import nn

import slimtorch as st
from slimtorch.budget.allocate import LayerCurves, _interp, allocate, layer_terms
from slimtorch.budget.latency import LatencyTable, layer_shapes
from slimtorch.graph.groups import build_groups
from slimtorch.graph.trace import trace


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    ).eval()  # fmt: skip


def _setup(x=None):
    model, x = _net(), torch.randn(1, 3, 16, 16) if x is None else x
    gset = build_groups(model, trace(model, x))
    shapes = layer_shapes(model, x)
    return model, x, gset.groups, shapes, layer_terms(gset.groups, shapes)


def test_layer_terms_name_the_groups_on_each_side():
    _, _, groups, _, terms = _setup()
    by_name = {t.name: t for t in terms}
    producers = {g.modules[0]: g.atom for g in groups}
    assert set(producers) == {"0", "2", "4"}  # the last linear is the output: kept
    assert by_name["2"].out_terms == ((producers["2"], 1),)
    assert by_name["2"].in_terms == ((producers["0"], 1),)
    assert by_name["8"].out_terms == () and by_name["8"].in_terms == ((producers["4"], 1),)


def _macs_cost(shapes, slow=None):
    """MACs of a layer at the given widths; ``slow`` layers cost 10x per MAC."""

    def cost(t, w_in, w_out):
        s = shapes[t.name]
        spatial = s.out_elements() // (s.out_ch * s.input[0]) if s.kind != "linear" else 1
        k = 1
        for n in s.kernel:
            k *= n
        return w_in * w_out * k * spatial * (10 if t.name == slow else 1)

    return cost


def test_allocate_cuts_where_time_is_spent():
    """Equal importances everywhere: making one layer 10x slower per MAC makes the allocator
    cut the group it produces harder, and the prediction meets the budget."""
    slow = "0"
    _, _, groups, shapes, terms = _setup()
    scores = {g.atom: torch.ones(g.size) for g in groups}
    steps = {g.atom: 8 for g in groups}
    floors = {g.atom: 8 for g in groups}
    kept = {}
    for name in (None, slow):
        cost = _macs_cost(shapes, name)
        full = sum(cost(t, t.in_full, t.out_full) for t in terms)
        keep, total = allocate(groups, scores, terms, cost, 0.5 * full, steps=steps, floors=floors)
        assert total <= 0.5 * full
        assert total == pytest.approx(sum(cost(t, *_widths(t, groups, keep)) for t in terms))
        assert all(k % 8 == 0 and k >= 8 for k in keep.values())
        kept[name] = {g.modules[0]: keep[g.atom] for g in groups}
    assert kept[slow][slow] < kept[None][slow]


def _widths(t, groups, keep):
    size = {g.atom: g.size for g in groups}
    w_out = t.out_full - sum(m * (size[a] - keep[a]) for a, m in t.out_terms)
    w_in = t.in_full - sum(m * (size[a] - keep[a]) for a, m in t.in_terms)
    return w_in, w_out


def test_allocate_keeps_important_channels_and_respects_floors():
    _, _, groups, shapes, terms = _setup()
    cost = _macs_cost(shapes)
    g0 = groups[0]
    scores = {g.atom: torch.ones(g.size) for g in groups}
    scores[g0.atom] = torch.full((g0.size,), 1.0)
    scores[g0.atom][:32] = 100.0  # half of one group matters a lot (normalized by the mean)
    steps = {g.atom: 8 for g in groups}
    floors = {g.atom: 16 for g in groups}
    keep, _ = allocate(groups, scores, terms, cost, 0.0, steps=steps, floors=floors)
    assert all(k == 16 for k in keep.values())  # a budget of 0: everything at its floor
    full = sum(cost(t, t.in_full, t.out_full) for t in terms)
    keep, _ = allocate(groups, scores, terms, cost, 0.7 * full, steps=steps, floors=floors)
    assert keep[g0.atom] >= 32  # the important half is never cut before the rest


def test_interpolation_goes_through_the_points_and_zero():
    curve = [(8, 1.0), (16, 3.0), (32, 4.0)]
    assert _interp(curve, 16) == 3.0 and _interp(curve, 24) == 3.5
    assert _interp(curve, 4) == 0.5 and _interp(curve, 64) == 4.0


def test_curves_are_timed_once_and_predict_the_full_layer(tmp_path):
    *_, shapes, terms = _setup()
    table = LatencyTable(threads=1, path=tmp_path / "t.json", rounds=3)
    curves = LayerCurves(table, shapes, terms, step=8)
    for t in terms:
        assert curves.ms(t, t.in_full, t.out_full) == pytest.approx(curves.full[t.name])
        # a timed value (no speed comparison: tiny layers time within noise of each other)
        half = curves.ms(t, t.in_full // 2, t.out_full // 2)
        assert 0 < half < float("inf")
    timed = table.measured
    assert timed > len(shapes)  # grid points besides the full shapes
    again = LayerCurves(LatencyTable(threads=1, path=tmp_path / "t.json"), shapes, terms, 8)
    assert again.full == curves.full  # all read back from the cache
    curves.calibrate(2 * sum(curves.full.values()))
    assert curves.full_ms() == pytest.approx(2 * sum(curves.full.values()))


def test_prune_channels_allocates_for_a_speedup(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMTORCH_CACHE", str(tmp_path))
    model, x = _net(), torch.randn(8, 3, 32, 32)
    r = st.prune_channels(model, x, speedup=1.6, threads=1, allocation="latency")
    lat = r.plan["latency"]
    assert r.plan["options"]["allocation"] == "latency"
    assert lat["steps"] and all("predicted_ms" in s for s in lat["steps"])
    assert any(s["ms"] <= lat["target_ms"] for s in lat["steps"])
    assert r.after["macs"] < r.before["macs"]
    kept = [g["kept"] for g in r.plan["groups"]]
    assert min(kept) < 64  # something was cut
    assert list(tmp_path.glob("latency/*.json"))  # the table was cached
    with torch.no_grad():
        assert r.model(x).shape == (8, 10)


def test_bad_allocation_is_named():
    with pytest.raises(st.ConfigError, match="allocation='fast' is invalid"):
        st.prune_channels(_net(), torch.randn(1, 3, 8, 8), speedup=2.0, allocation="fast")
