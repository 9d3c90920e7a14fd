"""Dense vs sparse CPU inference of pruned Linear and Conv2d layers, side by side.

For each layer, sparsity (unstructured, magnitude), batch size and thread count, the dense
kernel (MKL / oneDNN) and PyTorch's sparse kernels run interleaved on the same pruned weight:
CSR (``torch.sparse.mm``; convolutions as ``F.unfold`` + CSR matmul, as
``slimtorch.prune.weights.sparse_infer.SparseConv2d`` does) and COO. Medians after warm-up; one
table; the last column says which kernel to use. Semi-structured 2:4
(``torch.sparse.to_sparse_semi_structured``) is probed and reported: it needs CUDA.

Run: python benchmarks/sparse_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch import nn

from slimtorch.measure.latency import fixed_threads
from slimtorch.measure.timing import interleaved_times
from slimtorch.prune.weights.api import make_permanent_, prune_weights_
from slimtorch.prune.weights.sparse_infer import SparseConv2d, SparseLinear
from slimtorch.report.table import format_table

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


class CooLinear(nn.Module):
    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = linear.weight.detach().to_sparse_coo().coalesce()
        self.bias = linear.bias.detach()

    def forward(self, x):
        return torch.sparse.mm(self.weight, x.t().contiguous()).t() + self.bias


class CooConv2d(SparseConv2d):
    def __init__(self, conv: nn.Conv2d):
        super().__init__(conv)
        self.weight = self.weight.to_dense().to_sparse_coo().coalesce()


def semi_structured_status() -> str:
    try:
        from torch.sparse import to_sparse_semi_structured

        w = torch.randn(64, 64)
        w[:, ::2] = 0
        to_sparse_semi_structured(w)
    except Exception as exc:  # report the reason, whatever it is
        return f"not available on CPU ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    return "available on CPU"


def time_interleaved(fns, x, warmup: int, repeats: int) -> list[float]:
    runs = [lambda f=f: f(x) for f in fns]
    times = interleaved_times(runs, warmup=warmup, rounds=repeats)
    return [1e3 * statistics.median(t) for t in times]


def layers(quick: bool):
    yield "Linear 1024x1024", lambda: nn.Linear(1024, 1024), lambda b: torch.randn(b, 1024)
    if not quick:
        yield "Linear 4096x1024", lambda: nn.Linear(4096, 1024), lambda b: torch.randn(b, 4096)
    yield (
        "Conv2d 128->128 3x3 @14x14",
        lambda: nn.Conv2d(128, 128, 3, padding=1),
        lambda b: torch.randn(b, 128, 14, 14),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer layers and repeats")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.7, 0.9, 0.95, 0.99])
    args = parser.parse_args()
    repeats, warmup = (7, 2) if args.quick else (15, 3)
    torch.manual_seed(0)
    rows = []
    start = time.perf_counter()
    for name, make, data in layers(args.quick):
        for s in args.sparsities:
            dense = make().eval()
            prune_weights_(dense, s)
            make_permanent_(dense)
            is_linear = isinstance(dense, nn.Linear)
            csr = SparseLinear.from_dense(dense) if is_linear else SparseConv2d(dense)
            coo = CooLinear(dense) if is_linear else CooConv2d(dense)
            for batch in args.batches:
                x = data(batch)
                with torch.inference_mode():
                    ref = dense(x)
                    for m in (csr, coo):
                        torch.testing.assert_close(m(x), ref, rtol=1e-4, atol=1e-4)
                for threads in args.threads:
                    with torch.inference_mode(), fixed_threads(threads):
                        d, c, o = time_interleaved((dense, csr, coo), x, warmup, repeats)
                    best = min(c, o)
                    rows.append((
                        name, f"{100 * s:g}%", batch, threads, f"{d:.3f}", f"{c:.3f}",
                        f"{o:.3f}", f"{d / best:.2f}x", "sparse" if d / best > 1.1 else "dense",
                    ))  # fmt: skip
    headers = ("layer", "sparsity", "batch", "threads", "dense ms", "CSR ms", "COO ms",
               "best speedup", "use")  # fmt: skip
    print(format_table(headers, rows, "dense vs sparse CPU inference (median ms, interleaved)"))
    print(f"semi-structured 2:4: {semi_structured_status()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads available, "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
