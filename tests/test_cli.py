import json

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
