import zipfile

import pytest
import torch
import torchvision
from torch import nn

import slimtorch as st


def test_plain_model_round_trip(tmp_path):
    model = st.load_model("torchvision:mobilenet_v3_small").eval()
    x = torch.randn(1, 3, 64, 64)
    path = st.save(model, tmp_path / "m.slim")
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["plan.json", "weights.safetensors"]
    torch.testing.assert_close(st.load(path)(x), model(x), rtol=0, atol=0)


def test_spec_is_inferred_for_models_built_directly(tmp_path):
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    loaded = st.load(st.save(model, tmp_path / "r.slim"))
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_factory_specs_need_trust(tmp_path):
    model = st.load_model("torch.nn:Linear", in_features=4, out_features=2)
    path = st.save(model, tmp_path / "lin.slim")
    with pytest.raises(st.FormatError, match="trust_code=True"):
        st.load(path)
    loaded = st.load(path, trust_code=True)
    torch.testing.assert_close(loaded.weight, model.weight)


def test_unknown_model_needs_a_spec(tmp_path):
    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

    with pytest.raises(st.ConfigError, match="spec='package.module:factory'"):
        st.save(Mine(), tmp_path / "x.slim")


def test_truncated_and_tampered_files(tmp_path):
    path = st.save(st.load_model("torchvision:squeezenet1_1"), tmp_path / "s.slim")
    data = path.read_bytes()
    (tmp_path / "cut.slim").write_bytes(data[: len(data) // 2])
    with pytest.raises(st.FormatError, match="truncated or corrupted"):
        st.load(tmp_path / "cut.slim")
    with zipfile.ZipFile(path) as zf:
        plan, weights = zf.read("plan.json"), bytearray(zf.read("weights.safetensors"))
    weights[-1] ^= 0xFF
    with zipfile.ZipFile(tmp_path / "bad.slim", "w") as zf:
        zf.writestr("plan.json", plan)
        zf.writestr("weights.safetensors", bytes(weights))
    with pytest.raises(st.FormatError, match="checksum"):
        st.load(tmp_path / "bad.slim")
    evil = plan.replace(b"torchvision:squeezenet1_1", b"os:system")
    with zipfile.ZipFile(tmp_path / "evil.slim", "w") as zf:
        zf.writestr("plan.json", evil)
        zf.writestr("weights.safetensors", zf_bytes := bytes(bytearray(weights)))
    assert zf_bytes
    with pytest.raises(st.FormatError):
        st.load(tmp_path / "evil.slim")
    with pytest.raises(st.FormatError, match="does not exist"):
        st.load(tmp_path / "missing.slim")


def test_sparse_weights_are_small_on_disk(tmp_path):
    model = st.load_model("torchvision:resnet18").eval()
    dense = st.save(model, tmp_path / "dense.slim").stat().st_size
    st.prune_weights_(model, sparsity=0.9, scope="global")
    st.make_permanent_(model)
    sparse_path = st.save(model, tmp_path / "sparse.slim")
    assert sparse_path.stat().st_size <= 0.25 * dense
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(st.load(sparse_path)(x), model(x), rtol=0, atol=0)
