import json

import pytest

from slimtorch.cli import main


def test_analyze_json(capsys):
    assert main(["analyze", "torchvision:resnet18", "--input", "1,3,64,64", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == 11689512
    assert data["macs"] > 0 and data["layers"][0]["name"] == "conv1"


def test_analyze_table(capsys):
    assert main(["analyze", "torchvision:mobilenet_v2", "--rows", "3"]) == 0
    out = capsys.readouterr().out
    assert "input (1, 3, 224, 224)" in out and "params 3.50M" in out and "MACs 300." in out


def test_bench_prints_ratio(capsys):
    code = main(
        [
            "bench",
            "torchvision:resnet18",
            "torchvision:mobilenet_v2",
            "--input",
            "1,3,64,64",
            "--threads",
            "1",
            "--rounds",
            "3",
            "--warmup",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "torchvision:mobilenet_v2" in out and "1.00x" in out and "1 thread" in out


def test_errors_are_one_line(capsys):
    assert main(["analyze", "torchvision:resnet5"]) == 2
    err = capsys.readouterr().err
    assert "did you mean resnet50" in err and "Traceback" not in err
    assert main(["analyze", "torchvision:resnet18", "--input", "1,4,32,32"]) == 2
    assert "module 'conv1'" in capsys.readouterr().err


def test_prune_then_analyze_slim(tmp_path, capsys):
    out = tmp_path / "r18.slim"
    code = main(
        [
            "prune",
            "torchvision:resnet18",
            "--ratio",
            "0.5",
            "--input",
            "1,3,64,64",
            "--threads",
            "1",
            "--rounds",
            "2",
            "-o",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert code == 0 and out.exists()
    assert "11.69M" in text and "after" in text and "vs first" in text
    assert main(["analyze", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"] < 11689512 / 2
    assert main(["prune", "torchvision:resnet18", "--ratio", "1.5"]) == 2
    assert "ratio=1.5 is outside" in capsys.readouterr().err


def test_cli_errors_are_one_line_without_traceback(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.slim"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    assert main(["analyze", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "bad.slim" in err
    # An oversized --input is refused by the parser, before anything is allocated.
    import pytest

    with pytest.raises(SystemExit) as info:
        main(["analyze", "torchvision:resnet18", "--input", "1,3,100000,100000"])
    assert info.value.code == 2
    assert "elements, over" in capsys.readouterr().err


def test_output_path_is_checked_before_any_work(tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before -o was checked")

    for module in ("prune", "weights", "convert"):
        monkeypatch.setattr(f"slimtorch._cli.{module}.load_model", no_work)
    missing = str(tmp_path / "missing" / "out.slim")
    for argv in (
        ["prune", "torchvision:resnet18", "-o", missing],
        ["sparsify", "torchvision:resnet18", "-o", missing],
        ["convert", "torchvision:resnet18", "--to", "low_rank", "-o", missing],
        ["prune", "torchvision:resnet18", "-o", str(tmp_path)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("does not exist" in err or "is a folder" in err)


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(capsys, monkeypatch):
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("slimtorch._cli.measure.load_model", bug)
    assert main(["analyze", "torchvision:resnet18"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ZeroDivisionError: a bug" in err and "--debug" in err
    assert main(["--debug", "analyze", "torchvision:resnet18"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_prune_layers_then_load(tmp_path, capsys):
    out = tmp_path / "d.slim"
    spec = "slimtorch.train.models:digits_resnet"
    args = ["prune-layers", spec, "--input", "1,1,8,8", "--data", "digits", "-n", "2"]
    assert main([*args, "--no-bench", "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["after"]["params"] < report["before"]["params"]
    import slimtorch as st

    model = st.load(out, trust_code=True)
    assert sum(type(m).__name__ == "Residual" for m in model.modules()) == 4
    assert main(["prune-layers", "torchvision:resnet18", "-n", "9", "--blocks", "layer1.0"]) == 2
    assert "at most 1" in capsys.readouterr().err


def test_search_then_load(tmp_path, capsys):
    import torch

    import slimtorch as st
    from slimtorch.train.models import digits_resnet

    teacher, out = tmp_path / "teacher.slim", tmp_path / "s.slim"
    state, plot = tmp_path / "s.json", tmp_path / "front.png"
    st.save(digits_resnet(width=8), teacher, spec="slimtorch.train.models:digits_resnet",
            spec_kwargs={"width": 8})  # fmt: skip
    args = ["search", str(teacher), "--trust-code", "--input", "64,1,8,8", "--data", "digits",
            "--speedup", "1.2", "--budget", "3", "--proxy-steps", "1",
            "--state", str(state)]  # fmt: skip
    assert main([*args, "--plot", str(plot), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["measured_now"] == report["evaluated"] >= 1
    assert report["chosen"]["ms"] <= report["target_ms"] * 1.05
    assert plot.stat().st_size > 1000 and json.loads(state.read_text())["candidates"]
    model = st.load(out, trust_code=True)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert main(args) == 0  # resumed: nothing measured again
    assert "0 candidates measured now" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # argparse: a budget is required
        main(["search", "torchvision:resnet18", "--data", "digits"])
    assert "--speedup" in capsys.readouterr().err
