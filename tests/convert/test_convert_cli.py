import argparse
import json

import pytest

from slimtorch._cli import convert as cli
from slimtorch.errors import ConfigError


def _parse(argv):
    parser = argparse.ArgumentParser(prog="slimtorch")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_convert_prints_table_and_latency(capsys):
    args = _parse(
        [
            "convert",
            "torchvision:resnet18",
            "--to",
            "depthwise_separable",
            "--rank",
            "1",
            "--layers",
            "layer1.0.conv1,layer1.0.conv2",
            "--input",
            "1,3,32,32",
            "--threads",
            "1",
            "--rounds",
            "2",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "layer1.0.conv1  Conv2d -> DepthwiseSeparableConv2d" in out
    assert "2 layer(s) rewritten" in out and "latency at 1 thread(s)" in out and "after" in out


def test_convert_json_and_options(capsys):
    args = _parse(
        [
            "convert",
            "torchvision:resnet18",
            "--to",
            "low_rank",
            "--rank",
            "0.25",
            "--layers",
            "fc",
            "--input",
            "1,3,32,32",
            "--threads",
            "1",
            "--rounds",
            "1",
            "--json",
        ]
    )
    assert args.rank == 0.25
    assert args.func(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layers"][0]["note"] == "rank 128/512" and data["latency"]


def test_convert_errors_name_the_fix():
    args = _parse(
        [
            "convert",
            "torchvision:resnet18",
            "--to",
            "low_rank",
            "--groups",
            "2",
            "--input",
            "1,3,32,32",
        ]
    )
    with pytest.raises(ConfigError, match="option groups=2 is unknown for 'low_rank'"):
        args.func(args)
    with pytest.raises(SystemExit):
        _parse(["convert", "torchvision:resnet18", "--to", "low_rank", "--rank", "half"])


def test_convert_saves_slim(tmp_path, capsys):
    slim = pytest.importorskip("slimtorch.io.slim")
    out = tmp_path / "m.slim"
    args = _parse(
        [
            "convert",
            "torchvision:resnet18",
            "--to",
            "fuse_bn",
            "--input",
            "1,3,32,32",
            "--threads",
            "1",
            "--rounds",
            "1",
            "-o",
            str(out),
        ]
    )
    assert args.func(args) == 0 and out.exists()
    assert slim.load(str(out)) is not None
