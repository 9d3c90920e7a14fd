"""prune_weights_: achieved sparsity, patterns, composition, masks through training and I/O."""

import io
import json
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from slimtorch.edit.masks import WeightMask
from slimtorch.errors import ConfigError, PruneError
from slimtorch.prune.weights.api import make_permanent_, prune_weights_
from slimtorch.prune.weights.criteria import global_keep, lamp_scores, layer_keep
from slimtorch.prune.weights.options import WeightOptions
from slimtorch.prune.weights.stats import sparsity, zeroed_channels


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny ops on a shared 2-core machine: more threads only add contention (4x slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv1d(8, 16, 3)
        self.conv3 = nn.Conv3d(2, 4, (1, 3, 3))
        self.fc = nn.Linear(16, 12)
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        y = self.bn(self.conv1(x)).relu()  # [B, 8, 6, 6]
        y = self.conv2(y.flatten(2)).relu()  # [B, 16, 34]
        z = self.conv3(y[:, :2, :18].reshape(-1, 2, 1, 3, 6))  # [B, 4, 1, 1, 4]
        return self.head(self.fc(y.mean(2)).relu()) + z.mean((1, 2, 3, 4))[:, None]


def _x():
    return torch.randn(2, 4, 6, 6)


def _layers():
    return ["conv1", "conv2", "conv3", "fc", "head"]


@pytest.mark.parametrize("s", [0.0, 0.3, 0.5, 0.9, 0.97, 1.0])
@pytest.mark.parametrize("criterion", ["magnitude", "lamp", "random"])
def test_layer_scope_hits_target_per_layer(s, criterion):
    net = Net()
    report = prune_weights_(net, s, criterion=criterion)
    assert report.names == _layers()
    for name in _layers():
        w = net.get_submodule(name).weight
        assert int((w == 0).sum()) == math.floor(s * w.numel() + 0.5)
        assert abs(report[name] - s) <= 0.5 / w.numel()
    assert report.target == s


@pytest.mark.parametrize("s", [0.1, 0.5, 0.8, 0.95])
@pytest.mark.parametrize("criterion", ["magnitude", "lamp", "random"])
def test_global_scope_hits_target_in_total(s, criterion):
    net = Net()
    report = prune_weights_(net, s, scope="global", criterion=criterion)
    assert report.zeros == math.floor(s * report.numel + 0.5)
    assert sparsity(net).total == pytest.approx(s, abs=0.5 / report.numel)


def test_global_magnitude_prunes_the_smallest_weights():
    net = Net()
    before = {n: net.get_submodule(n).weight.detach().abs().clone() for n in _layers()}
    prune_weights_(net, 0.6, scope="global")
    kept = torch.cat([before[n][net.get_submodule(n).weight != 0] for n in _layers()])
    pruned = torch.cat([before[n][net.get_submodule(n).weight == 0] for n in _layers()])
    assert pruned.max() <= kept.min()


def test_lamp_scores_match_the_paper_formula():
    w = torch.tensor([3.0, -1.0, 2.0, 0.0])
    # sorted squares 0, 1, 4, 9: score = w_u^2 / sum of squares of weights >= it
    expected = torch.tensor([9 / 9, 1 / 14, 4 / 13, 0.0])
    torch.testing.assert_close(lamp_scores(w.abs()), expected)


def test_lamp_keeps_every_layer_alive_where_global_magnitude_does_not():
    def make():
        torch.manual_seed(1)
        net = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64))
        with torch.no_grad():
            net[1].weight.mul_(1e-3)  # a layer of tiny scale
        return net

    mag, lamp = make(), make()
    assert prune_weights_(mag, 0.6, scope="global")["1"] == 1.0
    report = prune_weights_(lamp, 0.6, scope="global", criterion="lamp")
    assert 0 < report["1"] < 1 and report.total == pytest.approx(0.6, abs=1e-4)


def test_global_keep_with_units_rounds_to_the_nearest_unit():
    keeps = global_keep([torch.tensor([1.0, 5.0]), torch.tensor([2.0, 3.0, 4.0])], [10, 4], 0.5)
    # weights: 20 + 12 = 32, budget 16: unit 1.0 (10), 2.0 (4) -> 14; 3.0 would make 18
    assert [k.tolist() for k in keeps] == [[False, True], [False, True, True]]
    assert layer_keep(torch.tensor([1.0, 1.0, 1.0, 0.0]), 0.5).tolist() == [
        False,
        True,
        True,
        False,
    ]


@pytest.mark.parametrize("pattern", ["2:4", "1:4", "4:8", "1:2"])
def test_nm_blocks_are_valid_and_keep_the_largest(pattern):
    n, m = map(int, pattern.split(":"))
    net = nn.Sequential(nn.Conv2d(8, 16, 3), nn.Linear(16, 24), nn.Conv1d(16, 8, 2))
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    report = prune_weights_(net, pattern=pattern)
    for name in ("0", "1", "2"):
        w = net.get_submodule(name).weight.detach()
        blocks = w.movedim(1, -1).reshape(-1, m)
        assert ((blocks != 0).sum(1) <= n).all()
        orig = before[f"{name}.weight"].movedim(1, -1).reshape(-1, m).abs()
        kept_min = torch.where(blocks != 0, orig, torch.inf).min(1).values
        dropped_max = torch.where(blocks == 0, orig, -torch.inf).max(1).values
        assert (kept_min >= dropped_max).all()
        assert report[name] == pytest.approx(1 - n / m)


def test_rows_and_cols_zero_whole_channels():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(6, 10, 3), nn.Linear(7, 20))
    report = prune_weights_(net, 0.3, pattern="rows")
    zc = zeroed_channels(net)
    assert len(zc["0"]) == 3 and len(zc["1"]) == 6
    assert report["0"] == pytest.approx(0.3) and report["1"] == pytest.approx(0.3)
    for name, idx in zc.items():
        w = net.get_submodule(name).weight
        alive = [i for i in range(w.shape[0]) if i not in idx]
        assert (w[idx] == 0).all() and (w[alive].reshape(len(alive), -1) != 0).any(1).all()

    net = nn.Sequential(nn.Conv2d(6, 10, 3), nn.Linear(7, 20))
    report = prune_weights_(net, 0.5, pattern="cols")
    w0, w1 = net[0].weight, net[1].weight
    dead0 = (w0 == 0).all(0).all(-1).all(-1)  # conv input channels
    dead1 = (w1 == 0).all(0)
    assert int(dead0.sum()) == 3 and int(dead1.sum()) == 4  # round(0.5 * 7) = 4
    assert int((w0 == 0).sum()) == 3 * 10 * 9 and zeroed_channels(net) == {}


def test_rows_global_prunes_the_lowest_rms_rows():
    net = nn.Sequential(nn.Linear(8, 10), nn.Linear(8, 10))
    with torch.no_grad():
        net[0].weight.mul_(0.01)
    report = prune_weights_(net, 0.5, pattern="rows", scope="global")
    assert report["0"] == 1.0 and report["1"] == 0.0


def test_repeated_pruning_composes_without_stacking():
    net = Net()
    prune_weights_(net, 0.5)
    first = {n: net.get_submodule(n).weight == 0 for n in _layers()}
    report = prune_weights_(net, 0.8)
    for n in _layers():
        module = net.get_submodule(n)
        assert len(module.parametrizations.weight) == 1
        assert (module.weight[first[n]] == 0).all()
        assert report[n] == pytest.approx(0.8, abs=0.5 / module.weight.numel())
    assert prune_weights_(net, 0.3).total == pytest.approx(0.8, abs=0.01)  # never un-prunes
    report = prune_weights_(net, pattern="2:4", ignore=["conv1", "conv3", "head"])
    assert all((net.get_submodule(n).weight[first[n]] == 0).all() for n in _layers())
    for n in report.names:  # blocks already below 2 non-zeros stay valid
        blocks = net.get_submodule(n).weight.movedim(1, -1).reshape(-1, 4)
        assert ((blocks != 0).sum(1) <= 2).all()


def test_threshold_prunes_below_it_like_the_seed():
    net = Net()
    before = {n: net.get_submodule(n).weight.detach().clone() for n in _layers()}
    report = prune_weights_(net, threshold=0.05)
    for n in _layers():
        assert torch.equal(net.get_submodule(n).weight == 0, before[n].abs() < 0.05)
    assert report.target is None


def test_per_layer_dict_prunes_only_named_layers():
    net = Net()
    report = prune_weights_(net, {"conv1": 0.25, "fc": 0.75})
    assert report.names == ["conv1", "fc"]
    assert report["conv1"] == pytest.approx(0.25, abs=0.01) and report["fc"] == 0.75
    assert not parametrize.is_parametrized(net.head)
    assert sparsity(net)["head"] == 0.0


def test_ignore_covers_submodules_and_biases_norms_stay_dense():
    net = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)))
    report = prune_weights_(net, 0.5, ignore=["1"])
    assert report.names == ["0"] and not parametrize.is_parametrized(net[1][0])
    assert (net[0].bias != 0).all() and (net[1][1].weight != 0).all()


def test_masks_hold_through_training_on_digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32) / 16
    y = torch.tensor(y)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    prune_weights_(net, 0.8)
    zeros = {n: net.get_submodule(n).weight == 0 for n in ("0", "2")}
    start = nn.functional.cross_entropy(net(x), y).item()
    for opt, epochs in (
        (torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3), 3),
        (torch.optim.AdamW(net.parameters(), lr=1e-2), 1),
    ):
        for i in list(range(0, 1600, 64)) * epochs:
            loss = nn.functional.cross_entropy(net(x[i : i + 64]), y[i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert nn.functional.cross_entropy(net(x), y).item() < start / 3
    for n, z in zeros.items():
        assert torch.equal(net.get_submodule(n).weight == 0, z)
        assert (net.get_submodule(n).parametrizations.weight.original[z] == 0).all()
    assert sparsity(net).total == pytest.approx(0.8, abs=1e-3)
    acc = (net(x).argmax(1) == y).float().mean()
    assert acc > 0.8


def test_state_dict_round_trip_keeps_masks():
    net = Net()
    prune_weights_(net, 0.7, scope="global", criterion="lamp")
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    fresh = Net()
    prune_weights_(fresh, 0.0)  # same parametrizations, all-ones masks
    fresh.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
    net.eval(), fresh.eval()
    x = _x()
    torch.testing.assert_close(fresh(x), net(x), rtol=0, atol=0)
    assert sparsity(fresh).by_layer == sparsity(net).by_layer
    assert isinstance(fresh.fc.parametrizations.weight[0], WeightMask)


def test_make_permanent_leaves_plain_zeros():
    net = Net().eval()
    prune_weights_(net, 0.6)
    x = _x()
    expected = net(x)
    params = {n: net.get_submodule(n).parametrizations.weight.original for n in _layers()}
    assert make_permanent_(net) == _layers()
    assert not any(parametrize.is_parametrized(m) for m in net.modules())
    assert all(net.get_submodule(n).weight is params[n] for n in _layers())
    assert set(net.state_dict()) == set(Net().state_dict())
    torch.testing.assert_close(net(x), expected)
    assert sparsity(net).total == pytest.approx(0.6, abs=1e-3)
    assert make_permanent_(net) == []


def test_removing_masks_from_a_copy_leaves_the_original_working():
    import copy

    net = Net().eval()
    prune_weights_(net, 0.5)
    x = _x()
    expected = net(x)
    first, second = copy.deepcopy(net), copy.deepcopy(net)
    make_permanent_(first)
    for m in second.modules():  # what a saver that bakes masks into a copy does
        for name in list(getattr(m, "parametrizations", {}) or {}):
            parametrize.remove_parametrizations(m, name, leave_parametrized=True)
    for model in (net, first, second, copy.deepcopy(copy.deepcopy(net))):
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    assert parametrize.is_parametrized(net.fc) and isinstance(first.fc, nn.Linear)


def test_sparsity_report_table():
    net = Net()
    text = str(prune_weights_(net, 0.5))
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "shape", "weights", "zeros", "sparsity", "target"]
    assert lines[-1].startswith("total") and "50.0" in lines[-1]
    assert len({len(line) for line in lines[2:]}) == 1  # right-aligned numbers
    assert str(sparsity(Net())).splitlines()[-1].split()[-1] == "0.00%"


def test_bfloat16_weights():
    net = nn.Linear(32, 16).to(torch.bfloat16)
    assert prune_weights_(net, 0.5, pattern="2:4").total == 0.5
    assert net.weight.dtype == torch.bfloat16


# --- bad input: our exceptions, naming the value and the fix ---------------------------


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_sparsity_out_of_range(bad):
    with pytest.raises(ConfigError, match=r"outside \[0, 1\].*e\.g\. 0\.9"):
        prune_weights_(Net(), bad)
    with pytest.raises(ConfigError, match=r"sparsity\['fc'\]"):
        prune_weights_(Net(), {"fc": bad})


def test_unknown_criterion_and_pattern_suggest():
    with pytest.raises(ConfigError, match="unknown criterion 'magnitud'.*did you mean magnitude"):
        prune_weights_(Net(), 0.5, criterion="magnitud")
    with pytest.raises(ConfigError, match="unknown pattern 'row'.*did you mean rows"):
        prune_weights_(Net(), 0.5, pattern="row")
    with pytest.raises(ConfigError, match="1 <= N < M"):
        prune_weights_(Net(), pattern="4:2")
    with pytest.raises(ConfigError, match="scope='globl' is invalid.*did you mean global"):
        prune_weights_(Net(), 0.5, scope="globl")


def test_nm_that_does_not_divide_the_input_dim():
    net = Net()
    with pytest.raises(PruneError, match=r"'conv3'.*input dimension 2.*ignore=\[\.\.\.\]"):
        prune_weights_(net, pattern="2:4")
    assert not any(parametrize.is_parametrized(m) for m in net.modules())  # nothing changed
    with pytest.raises(PruneError, match="'conv1'.*not a multiple of 8"):
        prune_weights_(net, pattern="2:8", ignore=["conv3"])


def test_ignore_and_dict_names_must_exist():
    with pytest.raises(ConfigError, match="ignore names module 'fcc'.*did you mean fc"):
        prune_weights_(Net(), 0.5, ignore=["fcc"])
    with pytest.raises(ConfigError, match="'haed', which is not a prunable layer.*head"):
        prune_weights_(Net(), {"haed": 0.5})
    with pytest.raises(ConfigError, match="'bn', which is not a prunable layer"):
        prune_weights_(Net(), {"bn": 0.5})
    with pytest.raises(ConfigError, match="pass a list"):
        prune_weights_(Net(), 0.5, ignore="fc")


def test_conflicting_options():
    with pytest.raises(ConfigError, match="pass one of them"):
        prune_weights_(Net(), 0.5, threshold=0.1)
    with pytest.raises(ConfigError, match="criterion='magnitude'"):
        prune_weights_(Net(), threshold=0.1, criterion="lamp")
    with pytest.raises(ConfigError, match="cannot be combined with scope='global'"):
        prune_weights_(Net(), {"fc": 0.5}, scope="global")
    with pytest.raises(ConfigError, match="fixes the sparsity at 0.5"):
        prune_weights_(Net(), 0.8, pattern="2:4")
    with pytest.raises(ConfigError, match="threshold=-1"):
        WeightOptions(threshold=-1)


def test_tied_weights_are_refused():
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    net[1].weight = net[0].weight
    with pytest.raises(PruneError, match="share one weight tensor.*ignore"):
        prune_weights_(net, 0.5)


def test_options_round_trip_as_json():
    opts = WeightOptions(sparsity={"fc": 0.5}, ignore=["head"])
    assert WeightOptions.from_dict(json.loads(json.dumps(opts.to_dict()))) == opts
    assert opts.replace(sparsity=0.3).target == 0.3
    assert WeightOptions(pattern="1:4").target == 0.75
