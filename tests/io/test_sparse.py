"""pack/unpack: bit-exact round trips and the size win of sparse tensors."""

import numpy as np
import pytest
import torch

from slimtorch.errors import FormatError
from slimtorch.io.sparse import pack, unpack


def _sparse(shape, density, dtype=torch.float32):
    """Random non-zeros at ``density``; zeros are +0.0 (as masks write them)."""
    return torch.where(torch.rand(shape) < density, torch.randn(shape), 0.0).to(dtype)


def _nbytes(parts):
    return sum(t.numel() * t.element_size() for t in parts.values())


def _same_bits(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    if a.dtype == torch.bool:
        return torch.equal(a, b)
    bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return torch.equal(a.contiguous().view(bits), b.contiguous().view(bits))


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8]
)
@pytest.mark.parametrize("density", [0.0, 0.02, 0.1, 0.3])
def test_round_trip_is_bit_exact(dtype, density):
    t = _sparse((37, 11, 3), density, dtype)
    parts = pack(t)
    assert parts is not None and set(parts) == {"mask", "values"}
    assert parts["values"].dtype == dtype and parts["mask"].dtype == torch.uint8
    assert _same_bits(unpack(parts, t.shape, t.dtype), t)


def test_negative_zero_survives():
    t = torch.zeros(64)
    t[3], t[10], t[20] = -0.0, 1.5, -2.0
    parts = pack(t)
    assert parts["negzero"].tolist() == [16, 0, 0, 0, 0, 0, 0, 0]  # zero #3 of 62 is -0.0
    out = unpack(parts, t.shape, t.dtype)
    assert _same_bits(out, t)
    assert torch.signbit(out[3]) and not torch.signbit(out[4])
    assert "negzero" not in pack(torch.zeros(64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_zeros_from_multiplying_by_a_mask_still_pack_small(dtype):
    w = torch.randn(256, 256)
    t = (w * (torch.rand(256, 256) < 0.1)).to(dtype)  # negative weights give -0.0
    assert torch.signbit(t[t == 0]).float().mean() > 0.4
    parts = pack(t)
    assert _same_bits(unpack(parts, t.shape, t.dtype), t)
    assert _nbytes(parts) <= 0.25 * t.numel() * t.element_size()


def test_all_zero_packs_to_the_bitmask_alone():
    t = torch.zeros(100, 100)
    parts = pack(t)
    assert parts["values"].numel() == 0 and _nbytes(parts) == 1250
    assert _same_bits(unpack(parts, t.shape, t.dtype), t)


def test_dense_and_tiny_tensors_stay_dense():
    assert pack(torch.randn(100, 100)) is None
    assert pack(_sparse((1000,), 0.99)) is None  # 125 mask bytes + ~3960 > 4000 dense
    assert pack(torch.zeros(4)) is None  # below one byte of mask
    assert pack(torch.zeros(3, dtype=torch.complex128)) is None
    assert pack(torch.zeros(10, 10).to_sparse()) is None


def test_bitmask_matches_numpy_packbits_and_bool_tensors():
    t = _sparse((1001,), 0.1)
    parts = pack(t)
    expected = np.packbits(t.numpy() != 0)
    assert np.array_equal(parts["mask"].numpy(), expected)
    b = torch.rand(500) < 0.05
    assert torch.equal(unpack(pack(b), b.shape, b.dtype), b)


def test_non_contiguous_input():
    t = _sparse((64, 48), 0.05).t()
    assert _same_bits(unpack(pack(t), t.shape, t.dtype), t.contiguous())


@pytest.mark.parametrize(("dtype", "limit"), [(torch.float32, 0.25), (torch.float16, 0.25)])
def test_90_percent_sparse_packs_to_a_quarter(dtype, limit):
    t = torch.randn(512, 512)
    flat = t.view(-1)
    flat[torch.randperm(flat.numel())[: int(0.9 * flat.numel())]] = 0
    t = t.to(dtype)
    ratio = _nbytes(pack(t)) / (t.numel() * t.element_size())
    assert ratio <= limit
    if dtype == torch.float32:
        assert ratio == pytest.approx(0.1 + 1 / 32, abs=1e-3)


def test_damaged_parts_raise_format_error():
    t = _sparse((100,), 0.1)
    parts = pack(t)
    with pytest.raises(FormatError, match="expected exactly.*'negzero'"):
        unpack({"mask": parts["mask"]}, t.shape, t.dtype)
    with pytest.raises(FormatError, match=r"expected uint8\[13\]"):
        unpack({"mask": parts["mask"][:5], "values": parts["values"]}, t.shape, t.dtype)
    with pytest.raises(FormatError, match="expected a 1-D torch.float16"):
        unpack(parts, t.shape, torch.float16)
    with pytest.raises(FormatError, match="values are stored"):
        unpack({"mask": parts["mask"], "values": parts["values"][:-1]}, t.shape, t.dtype)


@pytest.mark.slow
def test_sparse_resnet50_slim_file_is_a_quarter(tmp_path):
    slim = pytest.importorskip("slimtorch.io.slim", reason="slimtorch.io.slim not written yet")
    from slimtorch.io.spec import load_model
    from slimtorch.prune.weights.api import make_permanent_, prune_weights_

    model = load_model("torchvision:resnet50").eval()
    dense_path, sparse_path = tmp_path / "dense.slim", tmp_path / "sparse.slim"
    slim.save(model, dense_path)
    prune_weights_(model, 0.9, scope="global")
    make_permanent_(model)
    slim.save(model, sparse_path)
    assert sparse_path.stat().st_size <= 0.25 * dense_path.stat().st_size
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(slim.load(sparse_path).eval()(x), model(x), rtol=0, atol=0)
