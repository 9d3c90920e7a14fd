"""``slimtorch export``: a model written for ONNX Runtime, ExecuTorch or OpenVINO, checked."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..io.spec import example_input
from ..runtime import export, quantize
from ..runtime.export import resolve_format
from ._common import check_output, input_shape
from .finetune import _data, _model


def cmd_export(args: argparse.Namespace) -> int:
    check_output(args)
    resolve_format(Path(args.output), args.format)  # a wrong name is refused before any work
    model = _model(args.model, args.trust_code).eval()
    x = example_input(args.model, model, args.input)
    if args.int8:
        train, _ = _data(args)
        calib = [train[i][0] for i in range(min(len(train), args.calib_samples))]
        import torch

        result = quantize(
            model,
            x,
            args.output,
            data=[torch.stack(calib)],
            format=args.format,
            method=args.int8,
        )
    else:
        result = export(model, x, args.output, args.format, check=not args.no_check)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a model for ONNX Runtime, ExecuTorch or OpenVINO, checked"
    )
    p.add_argument("model", help="file.slim, torchvision:NAME, timm:NAME or pkg.module:factory")
    p.add_argument("-o", "--output", required=True, help="m.onnx, m.pte (ExecuTorch) or m.xml")
    p.add_argument("--format", choices=["onnx", "executorch", "openvino"], help="default: suffix")
    p.add_argument("--input", type=input_shape, help="input shape the file is fixed to")
    p.add_argument(
        "--int8",
        nargs="?",
        const="static",
        choices=["static", "dynamic"],
        help="int8 through the runtime's quantizer, calibrated on --data",
    )
    p.add_argument("--data", default="digits", help="calibration data for --int8")
    p.add_argument("--image-size", type=int, default=32, help="for a folder of images")
    p.add_argument("--calib-samples", type=int, default=256)
    p.add_argument("--no-check", action="store_true", help="keep a file that differs from torch")
    p.add_argument("--trust-code", action="store_true", help="for a .slim built by a factory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)
