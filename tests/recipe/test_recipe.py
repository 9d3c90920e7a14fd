"""Recipes: validated up front with every problem at once, run step by step into a folder,
resumed after a kill, and every shipped recipe exercised."""

from pathlib import Path

import pytest
import torch
import yaml

import slimtorch as st
from slimtorch.cli import main
from slimtorch.recipe import run_recipe, validate
from slimtorch.recipe.run import STEP_RUNNERS, load_recipe

SHIPPED = sorted(p.stem for p in (Path(st.__file__).parent / "recipes").glob("*.yaml"))
SMALL = {  # a shipped recipe, with its training shortened for the test (same steps)
    "model": "slimtorch.train.models:digits_cnn",
    "data": "digits",
    "input": [16, 1, 8, 8],
    "steps": [
        {"finetune": {"epochs": 3, "lr": 0.005, "progress": False}},
        {"prune_channels": {"ratio": 0.5}},
        {"finetune": {"steps": 10, "teacher": "baseline", "progress": False}},
        {"analyze": {}},
    ],
}


def _write(tmp_path, recipe, name="r.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_three_mistakes_are_reported_at_once(tmp_path, capsys):
    bad = {
        "model": "slimtorch.train.models:digits_cnn",
        "data": "digits",
        "steps": [
            {"finetune": {"epochs": "three"}},  # wrong type
            {"prune_channels": {"spedup": 2}},  # unknown key, close to speedup
            {"prune_layers": {"n": 1}},
            {"prune_channels": {"ratio": 1.5}},  # impossible target
        ],
    }
    path = _write(tmp_path, bad)
    with pytest.raises(st.RecipeError) as err:
        run_recipe(path, tmp_path / "out")
    problems = err.value.problems
    assert len(problems) == 3, problems
    assert problems[0].startswith("steps[0].finetune.epochs") and "integer" in problems[0]
    assert "steps[1].prune_channels.spedup" in problems[1] and "did you mean speedup" in problems[1]
    assert problems[2].startswith("steps[3].prune_channels") and "ratio=1.5" in problems[2]
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    printed = capsys.readouterr().err
    assert "3 problem(s)" in printed and "spedup" in printed and "1.5" in printed


def test_problems_outside_steps_and_unknown_steps_are_named():
    with pytest.raises(st.RecipeError) as err:
        validate({"modle": "x", "steps": [{"prune_chanels": {}}, {"finetune": {"epochs": 1}}]})
    text = "\n".join(err.value.problems)
    assert "unknown option 'modle'" in text and "did you mean model" in text
    assert "model: required" in text
    assert "unknown step 'prune_chanels'" in text and "did you mean prune_channels" in text
    assert "finetune: needs data" in text


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipe_validates(name):
    recipe = load_recipe(name)
    assert recipe.steps and recipe.model and recipe.data


def test_overrides_are_applied_and_checked(tmp_path):
    path = _write(tmp_path, SMALL)
    r = load_recipe(path, overrides=["steps.1.prune_channels.ratio=0.25", "seed=3"])
    assert r.steps[1].options.ratio == 0.25 and r.seed == 3
    with pytest.raises(st.RecipeError, match="not a step index"):
        load_recipe(path, overrides=["steps.9.finetune.epochs=1"])
    with pytest.raises(st.RecipeError, match="write key=value"):
        load_recipe(path, overrides=["seed"])


def test_run_writes_models_state_and_resolved_recipe(tmp_path):
    out = tmp_path / "run"
    result = run_recipe(_write(tmp_path, SMALL), out, log=lambda s: None)
    files = {p.name for p in out.iterdir()}
    assert {"recipe.resolved.yaml", "state.json", "run.json", "baseline.slim"} <= files
    assert {"00-finetune.slim", "01-prune_channels.slim", "02-finetune.slim"} <= files
    rows = {m["name"]: m for m in result.run["models"]}
    assert rows["compressed"]["macs"] < 0.5 * rows["original"]["macs"]
    assert rows["original"]["accuracy"] > 0.5  # trained 3 epochs: far above chance (0.1)
    reloaded = st.load(out / "02-finetune.slim", trust_code=True)
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), result.model(x))
    assert yaml.safe_load((out / "recipe.resolved.yaml").read_text())["steps"][1] == {
        "prune_channels": {"ratio": 0.5}
    }


def test_a_killed_run_resumes_at_the_first_unfinished_step(tmp_path, monkeypatch):
    path = _write(tmp_path, SMALL)
    whole = run_recipe(path, tmp_path / "whole", log=lambda s: None)

    real = STEP_RUNNERS.get("finetune")
    calls = {"n": 0}

    def killed(run, step):
        calls["n"] += 1
        if calls["n"] == 2:  # the second fine-tune: after the prune was saved
            raise KeyboardInterrupt
        return real(run, step)

    monkeypatch.setitem(STEP_RUNNERS._table, "finetune", killed)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(path, tmp_path / "killed", log=lambda s: None)
    monkeypatch.setitem(STEP_RUNNERS._table, "finetune", real)
    lines = []
    resumed = run_recipe(path, tmp_path / "killed", log=lines.append)
    assert resumed.resumed == 2
    assert sum("done in an earlier run" in line for line in lines) == 2
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b)  # the same model as a run never killed


def test_another_recipe_in_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    small = {**SMALL, "steps": SMALL["steps"][:1]}
    run_recipe(_write(tmp_path, small), out, log=lambda s: None)
    with pytest.raises(st.ConfigError, match="holds a run of another recipe"):
        run_recipe(_write(tmp_path, small), out, overrides=["seed=1"], log=lambda s: None)


def test_inputs_in_the_output_folder_are_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    path = _write(out, SMALL)
    with pytest.raises(st.ConfigError, match="is an input of this run"):
        run_recipe(path, out, log=lambda s: None)


# Every shipped recipe runs, its training shortened by overrides (the steps are the recipe's).
SHORT = {
    "demo": ["steps.0.finetune.epochs=1", "steps.2.finetune.epochs=1"],
    "latency_target": ["steps.0.finetune.epochs=1", "steps.3.finetune.epochs=1"],
    "structure": ["steps.0.finetune.epochs=1", "steps.2.finetune.epochs=1"],
    "transformer_layers": ["steps.0.finetune.epochs=1", "steps.2.finetune.epochs=1"],
    "search": [
        "steps.0.finetune.epochs=1",
        "steps.1.search.budget=4",
        "steps.1.search.proxy_steps=2",
        "steps.2.finetune.epochs=1",
    ],
}


def test_every_shipped_recipe_has_a_run_test():
    assert set(SHORT) == set(SHIPPED)


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipe_runs(name, tmp_path):
    recipe = load_recipe(name, overrides=SHORT[name])
    result = run_recipe(name, tmp_path / name, overrides=SHORT[name], log=lambda s: None)
    rows = {m["name"]: m for m in result.run["models"]}
    assert rows["compressed"]["macs"] < rows["original"]["macs"]  # it compressed something
    assert len(result.run["steps"]) == len(recipe.steps)
    if any(s.kind.name == "benchmark" for s in recipe.steps):
        assert rows["compressed"]["latency"] and rows["original"]["latency"]
    if any(s.kind.name == "report" for s in recipe.steps):
        html = result.report.read_text()
        assert "compressed" in html and 'class="chart"' in html
