"""``slimtorch sparsify`` through its own parser (cli.py wires it in as module "weights")."""

import argparse
import importlib.util
import json

import pytest
from torch import nn
from torchvision.models import squeezenet1_1

from slimtorch._cli import weights as cli_weights
from slimtorch.errors import ConfigError, PruneError


def _run(argv):
    parser = argparse.ArgumentParser(prog="slimtorch")
    cli_weights.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_sparsify_prints_per_layer_and_total(capsys):
    code = _run(
        ["sparsify", "torchvision:squeezenet1_1", "--sparsity", "0.9", "--input", "1,3,64,64",
         "--ignore", "classifier"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split() == ["layer", "shape", "weights", "before", "after", "note"]
    first = next(line for line in lines if line.startswith("features.0 "))
    assert first.split()[-2:] == ["0.00%", "89.99%"]  # 1555 of 1728 = round(0.9 * 1728)
    head = next(line for line in lines if line.startswith("classifier.1 "))
    assert head.split()[-3:] == ["0.00%", "0.00%", "kept"]
    total = next(line for line in lines if line.startswith("total"))
    convs = [m.weight.numel() for m in squeezenet1_1().modules() if isinstance(m, nn.Conv2d)]
    n = sum(convs) - 512_000  # every conv but the kept classifier
    assert float(total.split()[-1].rstrip("%")) == pytest.approx(90 * n / sum(convs), abs=0.01)
    assert "warning" not in out
    assert "sparsity 0.00% ->" in out and "output change on a random input (1, 3, 64, 64)" in out


def test_sparsify_2_4_json(capsys):
    code = _run(
        ["sparsify", "torchvision:squeezenet1_1", "--pattern", "2:4", "--scope", "global",
         "--input", "1,3,64,64", "--ignore", "features.0", "--json"]
    )  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["before"]["total"] == 0.0
    layers = {r["name"]: r["sparsity"] for r in data["after"]["layers"]}
    assert layers["features.0"] == 0.0
    assert all(v == 0.5 for k, v in layers.items() if k != "features.0")
    assert data["output_change"] > 0


def test_sparsify_warns_about_collapsed_layers(capsys):
    argv = ["sparsify", "torchvision:squeezenet1_1", "--pattern", "rows", "--scope", "global",
            "--input", "1,3,64,64"]  # fmt: skip
    assert _run(argv) == 0
    out = capsys.readouterr().out
    assert "warning: entirely zero: " in out and "classifier.1" in out and "lamp" in out
    assert _run([*argv, "--criterion", "lamp"]) == 0
    assert "warning" not in capsys.readouterr().out


def test_sparsify_errors_name_the_fix():
    with pytest.raises(PruneError, match="'features.0'.*input dimension 3.*ignore"):
        _run(["sparsify", "torchvision:squeezenet1_1", "--pattern", "2:4", "--input", "1,3,64,64"])
    with pytest.raises(ConfigError, match=r"sparsity=1.5 is outside \[0, 1\]"):
        _run(["sparsify", "torchvision:squeezenet1_1", "--sparsity", "1.5", "--input", "1,3,64,64"])
    with pytest.raises(SystemExit):
        _run(["sparsify", "torchvision:squeezenet1_1", "--sparsity", "lots"])


def test_sparsify_output_file(tmp_path, capsys):
    out = tmp_path / "sparse.slim"
    argv = ["sparsify", "torchvision:squeezenet1_1", "--sparsity", "0.5", "--input", "1,3,64,64",
            "-o", str(out)]  # fmt: skip
    if importlib.util.find_spec("slimtorch.io.slim") is None:
        with pytest.raises(ConfigError, match="-o needs slimtorch.io.slim"):
            _run(argv)
    else:
        assert _run(argv) == 0 and out.stat().st_size > 0
        assert f"saved {out}" in capsys.readouterr().out
