"""Sparse CPU kernels for pruned layers, used only where they measurably win on this machine.

On x86 CPUs, dense GEMM and convolution kernels (MKL, oneDNN) are so well tuned that
PyTorch's sparse CSR kernels (``torch.sparse.mm``) beat them only at high sparsity. Measured
with ``benchmarks/sparse_speed.py`` (one thread, AVX-512 AMD EPYC): a 1024x1024 Linear gains from
~90% zeros at batch 1 and from ~70% at batch 32; a 3x3 convolution as im2col + CSR gains
almost never (99% zeros, batch 1). ``sparsify_for_inference`` measures each layer and swaps
only the winners. Everywhere else, unstructured sparsity buys size (see
``slimtorch.io.sparse``), not speed.
"""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass, field

import torch
from torch import nn

from ..._forward import Inputs, capture_inputs, check_model, check_threads
from ...edit.sparse import sparsify_module_
from ...measure.latency import fixed_threads
from ...measure.timing import interleaved_times
from ...nn.sparse import SPARSE_DTYPES, SPARSE_KINDS, SparseConv2d, SparseLinear, conv_unsupported
from ...report.table import format_table
from .api import make_permanent_
from .layers import prunable_layers

__all__ = [
    "LayerTiming",
    "SparseConv2d",
    "SparseLinear",
    "SparsifyResult",
    "sparsify_for_inference",
]


@dataclass(frozen=True)
class LayerTiming:
    """One layer's decision: median latency dense vs sparse at the recorded input."""

    name: str
    kind: str
    sparsity: float
    dense_ms: float | None
    sparse_ms: float | None
    switched: bool
    note: str = ""


@dataclass
class SparsifyResult:
    """A new model with sparse layers where they won, and the measurements behind it."""

    model: nn.Module
    layers: list[LayerTiming] = field(default_factory=list)
    threads: int = 1

    @property
    def switched(self) -> list[str]:
        return [r.name for r in self.layers if r.switched]

    @property
    def dense(self) -> list[str]:
        return [r.name for r in self.layers if not r.switched]

    def __str__(self) -> str:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.4f}"

        rows = [
            (
                r.name,
                r.kind,
                f"{100 * r.sparsity:.1f}%",
                ms(r.dense_ms),
                ms(r.sparse_ms),
                "-" if not r.dense_ms or not r.sparse_ms else f"{r.dense_ms / r.sparse_ms:.2f}x",
                "sparse" if r.switched else "dense",
                r.note,
            )
            for r in self.layers
        ]
        headers = ("layer", "type", "sparsity", "dense ms", "sparse ms", "speedup", "uses", "note")
        title = f"sparse kernels at {self.threads} thread(s): {len(self.switched)} switched"
        return format_table(headers, rows, title)


def _time_pair(
    dense: nn.Module, sparse: nn.Module, x: torch.Tensor, warmup: int, repeats: int
) -> tuple[float, float]:
    td, ts = interleaved_times([lambda: dense(x), lambda: sparse(x)], warmup=warmup, rounds=repeats)
    return 1e3 * statistics.median(td), 1e3 * statistics.median(ts)


def sparsify_for_inference(
    model: nn.Module,
    example_inputs: Inputs,
    threads: int | None = None,
    *,
    min_sparsity: float = 0.5,
    min_speedup: float = 1.1,
    warmup: int = 3,
    repeats: int = 15,
) -> SparsifyResult:
    """Returns a copy of ``model`` where sparse kernels replace the layers they speed up.

    Each Linear and Conv2d (groups=1) whose weight is at least ``min_sparsity`` zeros is timed
    dense and as ``SparseLinear`` / ``SparseConv2d`` (CSR weight, ``torch.sparse.mm``) on the
    input it receives from ``example_inputs``, at ``threads`` threads, interleaved, medians.
    It is swapped only when ``dense_ms / sparse_ms >= min_speedup``. Masks are made permanent
    in the copy; the input model is untouched. On CPUs, expect wins only at very high
    sparsity: elsewhere unstructured sparsity buys size, not speed.

    Args:
        model: a pruned model (masks or plain zeros).
        example_inputs: inputs of the batch size and shape you will serve.
        threads: intra-op threads to decide at (the deployment's); all by default.
        min_sparsity: layers below it are not tried.
        min_speedup: required ratio; 0 swaps every tried layer (for testing).
        warmup / repeats: untimed and timed runs per layer and kernel.

    Returns:
        ``SparsifyResult``: ``.model``, ``.switched``, ``.dense``, and ``print()`` shows the
        measured times of every layer.

    Example:
        >>> result = sparsify_for_inference(pruned, torch.randn(1, 3, 224, 224), threads=1)
        >>> print(result)
    """
    check_model(model)
    n_threads = check_threads(threads)
    work = copy.deepcopy(model).eval()
    make_permanent_(work)
    candidates = list(prunable_layers(work))
    result = SparsifyResult(work, threads=n_threads)
    with torch.inference_mode(), fixed_threads(n_threads):
        inputs = capture_inputs(work, example_inputs, candidates)
        for name in candidates:
            module = work.get_submodule(name)
            w = getattr(module, prunable_layers(module)[""][1])
            s = float((w == 0).sum()) / w.numel()
            row = dict(
                name=name,
                kind=type(module).__name__,
                sparsity=s,
                dense_ms=None,
                sparse_ms=None,
                switched=False,
            )
            note = ""
            if SPARSE_KINDS.lookup(type(module)) is None:
                note = f"no sparse kernel for {type(module).__name__}"
            elif name not in inputs:
                note = "not called by example_inputs"
            elif s < min_sparsity:
                note = f"below min_sparsity={min_sparsity}"
            elif w.dtype not in SPARSE_DTYPES:
                note = f"{w.dtype} has no CPU sparse kernel"
            elif isinstance(module, nn.Conv2d) and conv_unsupported(module):
                note = conv_unsupported(module)
            if note:
                result.layers.append(LayerTiming(**row, note=note))
                continue
            with torch.inference_mode(False):  # a model that can be copied and saved later
                sparse = SPARSE_KINDS.get(type(module))(module)
            x = inputs[name]
            d_ms, s_ms = _time_pair(module, sparse, x, warmup, repeats)
            switched = d_ms / s_ms >= min_speedup
            if switched and name:
                sparsify_module_(work, name, sparse)
            elif switched:  # the model is this one layer
                result.model = sparse
            row.update(dense_ms=d_ms, sparse_ms=s_ms, switched=switched)
            result.layers.append(LayerTiming(**row))
    return result
