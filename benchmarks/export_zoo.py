"""Export sweep: every torchvision classifier, pruned as the channel-pruning zoo tests prune
it, exported to ONNX and run in ONNX Runtime against PyTorch.

Per model: ``tests/_zoo.py::torchvision_case`` (the zoo's model and input:
64x64, maxvit 224, inception 96, ViT built at 64), ``st.prune_channels(ratio=0.5)``, then
``st.export(pruned, x, "m.onnx")`` (torch.export -> the dynamo ONNX exporter -> ONNX Runtime,
checked: ``|ort - torch| <= 1e-4 + 1e-3 max|torch|``). A model that fails is a row with the
named reason, never a crash. Coverage, not speed: no timings but the export's own seconds.

Run: python benchmarks/export_zoo.py [--names a,b] [--limit N] [--format onnx] [--json rows.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

import slimtorch as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_channels_zoo import torchvision_case


def one(name: str, fmt: str, folder: Path) -> dict:
    row = {"model": name}
    model, x = torchvision_case(name)
    pruned = st.prune_channels(model, x, ratio=0.5)
    row["macs_kept"] = pruned.after["macs"] / pruned.before["macs"]
    suffix = {"onnx": ".onnx", "executorch": ".pte", "openvino": ".xml"}[fmt]
    began = time.perf_counter()
    try:
        r = st.export(pruned.model, x, folder / f"{name}{suffix}")
        row.update(ok=True, max_abs=r.max_abs_error, rel=r.rel_error, mb=r.size_bytes / 1e6)
    except st.SlimTorchError as exc:
        row.update(ok=False, error=f"{type(exc).__name__}: {str(exc)[:160]}")
    row["s"] = time.perf_counter() - began
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", help="comma list (default: every torchvision classifier)")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--format", default="onnx", choices=["onnx", "executorch", "openvino"])
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    names = (
        args.names.split(",")
        if args.names
        else torchvision.models.list_models(module=torchvision.models)
    )
    names = names[: args.limit] if args.limit else names
    torch.manual_seed(0)
    rows = []
    print(f"{'model':<24} {'MACs kept':>9} {'ok':>3} {'max |ort-torch|':>15} {'rel':>9} {'s':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            try:
                row = one(name, args.format, Path(tmp))
            except Exception as exc:  # a row, not a crash
                row = {"model": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:160]}
            rows.append(row)
            for f in Path(tmp).iterdir():
                f.unlink()
            if row.get("ok"):
                print(
                    f"{name:<24} {row['macs_kept']:>9.3f} {'yes':>3} {row['max_abs']:>15.2e} "
                    f"{row['rel']:>9.2e} {row['s']:>6.1f}",
                    flush=True,
                )
            else:
                print(f"{name:<24} {'':>9} {'NO':>3}  {row.get('error')}", flush=True)
    ok = sum(bool(r.get("ok")) for r in rows)
    print(f"\n{ok}/{len(rows)} export to {args.format} and match PyTorch")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
