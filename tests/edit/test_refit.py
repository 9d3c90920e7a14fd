"""Compensation (``compensate_``) and the data-aware importance criteria."""

import copy

import pytest
import torch
from torch import nn

import slimtorch as st
from slimtorch._forward import relative_error
from slimtorch.edit.refit import compensate_


def _mlp(constant: int = 0) -> nn.Module:
    """Linear -> ReLU -> Linear -> ReLU -> Linear; the first ``constant`` hidden units of the
    first layer output a constant (zero weights, a positive bias)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)
    ).eval()
    with torch.no_grad():
        model[0].weight[:constant] = 0
        model[0].bias[:constant] = torch.linspace(0.5, 2.0, max(constant, 1))[:constant]
    return model


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5),
    ).eval()  # fmt: skip
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
    return model


def _batches(shape, n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for _ in range(n)]


def test_refit_is_exact_when_nothing_was_removed():
    model = _cnn()
    work = copy.deepcopy(model)
    report = compensate_(work, model, _batches((4, 3, 12, 12)), layers="all")
    assert [r["layer"] for r in report.rows] == ["0", "3", "8"]
    for (name, a), b in zip(model.state_dict().items(), work.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=name)
    assert max(r["error_after"] for r in report.rows) < 1e-5


def test_refit_solves_the_least_squares_problem():
    model = _mlp()
    data = _batches((64, 8))
    pruned = st.prune_channels(model, data[0], 0.5).model
    report = compensate_(pruned, model, data, ridge=0.0, max_rows=10_000)
    assert {r["layer"] for r in report.rows} == {"2", "4"}
    # The oracle for the first refit layer: ordinary least squares with an intercept, on the
    # pruned model's activations against the original layer's kept outputs.
    kept0 = st.edit.edits_of(pruned)[-1]["tensors"]["2.weight"]["0"]
    x = torch.cat([pruned[1](pruned[0](b)) for b in data]).double()
    y = torch.cat([model[2](model[1](model[0](b))) for b in data]).double()[:, kept0]
    a = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    theta = torch.linalg.lstsq(a, y).solution
    torch.testing.assert_close(pruned[2].weight.double(), theta[:-1].t(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pruned[2].bias.double(), theta[-1], atol=1e-4, rtol=1e-4)
    assert all(r["error_after"] <= r["error_before"] + 1e-9 for r in report.rows)


def test_activation_importance_removes_constant_channels_and_the_bias_absorbs_them():
    # 16 of the 32 hidden units of the first layer are constant: zero variance, so
    # importance="activation" removes exactly them, and the refit bias carries their
    # contribution: the compensated model computes what the original does.
    model = _mlp(constant=16)
    data, test = _batches((64, 8)), torch.randn(128, 8)
    kwargs = dict(importance="activation", data=data, ratios={"0": 0.5}, ignore=["2"])
    plain = st.prune_channels(model, data[0], 0.0, **kwargs)
    fixed = st.prune_channels(model, data[0], 0.0, compensate=True, **kwargs)
    removed = next(g["removed"] for g in fixed.plan["groups"] if "0" in g["modules"])
    assert sorted(removed) == list(range(16))
    with torch.no_grad():
        ref = model(test)
        assert relative_error(ref, plain.model(test)) > 0.05
        assert relative_error(ref, fixed.model(test)) < 1e-5
    assert [r["layer"] for r in fixed.compensation.rows] == ["2"]


def test_compensation_passes_the_mean_to_the_batchnorm_and_lowers_the_error():
    model = _cnn()
    data, test = _batches((8, 3, 12, 12), n=6), torch.randn(16, 3, 12, 12)
    plain = st.prune_channels(model, data[0], 0.5, data=data)
    fixed = st.prune_channels(model, data[0], 0.5, data=data, compensate=True)
    rows = {r["layer"]: r for r in fixed.compensation.rows}
    assert rows["3"]["bias"] == "norm" and rows["8"]["bias"] == "own"
    assert not torch.equal(fixed.model[4].running_mean, plain.model[4].running_mean)
    with torch.no_grad():
        ref = model(test)
        e_plain = relative_error(ref, plain.model(test))
        e_fixed = relative_error(ref, fixed.model(test))
    assert e_fixed < 0.8 * e_plain, (e_plain, e_fixed)
    assert "compensation" in fixed.compensation.table()


def test_compensated_model_round_trips_through_slim(tmp_path):
    model = _cnn()
    data = _batches((4, 3, 12, 12))
    r = st.prune_channels(model, data[0], 0.5, data=data, compensate=True)
    path = tmp_path / "m.slim"
    st.save(r.model, path, spec="test_refit:_cnn")
    back = st.load(path, trust_code=True)
    with torch.no_grad():
        torch.testing.assert_close(back(data[1]), r.model(data[1]))


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"compensate": True}, st.InputError, "calibration data"),
        ({"importance": "activation"}, st.InputError, r"data=\["),
        ({"compensate": True, "data": []}, st.InputError, "no batches"),
        ({"compensate": True, "data": 3}, st.InputError, "list of batches"),
        ({"compensate": True, "data": [torch.randn(2, 5, 12, 12)]}, st.ForwardError, "module"),
        ({"compensate": "yes", "data": [torch.randn(2, 3, 12, 12)]}, st.ConfigError, "True"),
    ],
)
def test_bad_calibration_input_is_named(kwargs, error, words):
    with pytest.raises(error, match=words):
        st.prune_channels(_cnn(), torch.randn(1, 3, 12, 12), 0.5, **kwargs)


def test_bad_refit_options_are_named():
    model = _cnn()
    pruned = st.prune_channels(model, torch.randn(1, 3, 12, 12), 0.5).model
    data = _batches((2, 3, 12, 12), n=1)
    with pytest.raises(st.ConfigError, match="ridge"):
        compensate_(pruned, model, data, ridge=-1)
    with pytest.raises(st.ConfigError, match="not linear or conv"):
        compensate_(pruned, model, data, layers=["nope"])
    with pytest.raises(st.ConfigError, match="'pruned', 'all'"):
        compensate_(pruned, model, data, layers="some")


class _Tied(nn.Module):
    """An embedding tied to the output layer, around a residual MLP."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(50, 16)
        self.up, self.down = nn.Linear(16, 32), nn.Linear(32, 16)
        self.head = nn.Linear(16, 50, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.emb(ids)
        return self.head(h + self.down(torch.relu(self.up(h))))


def test_tied_weights_are_not_refit():
    model = _Tied().eval()
    g = torch.Generator().manual_seed(0)
    data = [torch.randint(0, 50, (4, 12), generator=g) for _ in range(3)]
    r = st.prune_channels(model, data[0], 0.5, data=data, compensate=True)
    assert r.model.head.weight is r.model.emb.weight
    assert "tied" in r.compensation.skipped["head"]
    assert "down" in {row["layer"] for row in r.compensation.rows}
    with torch.no_grad():
        assert r.model(data[0]).shape == (4, 12, 50)
