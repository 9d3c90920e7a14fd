"""Which channel multiple pays on this CPU? Latency of a 3x3 and a 1x1 conv (28x28, batch 1,
1 thread) as the output width sweeps 56..72, next to its MACs. Widths that are multiples of the
SIMD width (8 floats for AVX2, 16 for AVX-512) are the fast ones; ``round_to`` in
``prune_channels`` defaults to the multiple this table favours.

Run: python benchmarks/channel_multiple.py
"""

from __future__ import annotations

import torch
from torch import nn

import slimtorch as st
from slimtorch.report.table import format_table


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 64, 28, 28)
    rows = []
    for width in range(56, 73):
        models = {
            f"3x3 {width}": nn.Conv2d(64, width, 3, padding=1),
            f"1x1 {width}": nn.Conv2d(64, width, 1),
        }
        table = st.compare(models, x, threads=1, rounds=60, warmup=10)
        k3, k1 = table.rows
        rows.append(
            (
                width,
                width % 8 == 0,
                width % 16 == 0,
                f"{k3['median_ms'] * 1e3:.0f}",
                f"{k3['median_ms'] * 1e6 / k3['macs']:.2f}",
                f"{k1['median_ms'] * 1e3:.0f}",
                f"{k1['median_ms'] * 1e6 / k1['macs']:.2f}",
            )
        )
    headers = ("out channels", "x8", "x16", "3x3 us", "3x3 ns/kMAC", "1x1 us", "1x1 ns/kMAC")
    cap = torch.backends.cpu.get_cpu_capability()
    title = f"conv latency vs output width, 64 in, 28x28, 1 thread ({cap})"
    print(format_table(headers, rows, title))
    print(f"round_to='auto' picks {st.simd_channels()} here")


if __name__ == "__main__":
    main()
