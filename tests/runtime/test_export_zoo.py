"""Oracle 4 over the zoo: one torchvision model per family (the cheapest by published GFLOPS,
``_zoo.torchvision_families``), pruned as the channel-pruning zoo prunes it, exports to ONNX
and matches PyTorch in ONNX Runtime. ``benchmarks/export_zoo.py`` runs every model."""

import pytest
import torch
import torchvision

import slimtorch as st
from _zoo import torchvision_case, torchvision_families

FAMILIES = torchvision_families(torchvision.models.list_models(module=torchvision.models))


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_pruned_family_exports_to_onnx(family, tmp_path):
    model, x = torchvision_case(FAMILIES[family])
    pruned = st.prune_channels(model, x, ratio=0.5)
    assert pruned.after["macs"] < 0.75 * pruned.before["macs"]  # it was pruned
    result = st.export(pruned.model, x, tmp_path / "m.onnx")
    (out, *_) = result.load(threads=1)(result.inputs(x))
    with torch.no_grad():
        ref = pruned.model.eval()(x)
    ref = ref if isinstance(ref, torch.Tensor) else ref[0]
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-4 + 1e-3 * float(ref.abs().max()))
