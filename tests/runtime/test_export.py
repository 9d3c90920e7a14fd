"""Export to the deployment runtimes: the file runs in its runtime and computes what PyTorch
computes (oracle 4), int8 keeps a trained model's accuracy, and bad requests are named."""

import json

import pytest
import torch
from torch import nn

import slimtorch as st
from slimtorch.runtime import Backend, backend_names, get_backend
from slimtorch.runtime.backends import BACKENDS
from slimtorch.train.data import digits
from slimtorch.train.models import digits_cnn

FORMATS = {"onnx": ".onnx", "executorch": ".pte", "openvino": ".xml"}


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    return st.finetune(
        digits_cnn(width=16), digits("train"), epochs=2, lr=3e-3, progress=False
    ).model


def _accuracy(run, x, y, batch=60):
    """Accuracy over x in batches of ``batch`` (exported files are fixed to their batch)."""
    hits = sum(
        int((run(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
        for i in range(0, len(x) - batch + 1, batch)
    )
    return hits / (len(x) // batch * batch)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_export_matches_torch_in_its_runtime(fmt, trained, tmp_path):
    x = digits("test").tensors[0][:8]
    result = st.export(trained, x, tmp_path / f"m{FORMATS[fmt]}")
    assert result.format == fmt and result.path.exists() and result.size_bytes > 0
    (out,) = result.load(threads=1)(result.inputs(x))
    with torch.no_grad():
        torch.testing.assert_close(out.float(), trained(x), rtol=1e-4, atol=1e-4)
    assert result.max_abs_error < 1e-4
    assert not list(tmp_path.glob(".*")), "staging files left behind"


def test_keyword_inputs_keep_their_names(tmp_path):
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(5, 3)

        def forward(self, *, left, right):
            return self.a(left) - 2 * self.b(right)

    model = Two()
    inputs = {"right": torch.randn(2, 5), "left": torch.randn(2, 4)}  # not signature order
    result = st.export(model, inputs, tmp_path / "two.onnx")
    (out,) = result.load()(result.inputs(inputs))
    torch.testing.assert_close(out, model(**inputs))


def test_int8_onnx_keeps_accuracy_and_shrinks_the_file(trained, tmp_path):
    test_x, test_y = digits("test").tensors
    calib = digits("train").tensors[0][:256]
    x = test_x[:60]
    fp32 = st.export(trained, x, tmp_path / "fp32.onnx")
    int8 = st.quantize(trained, x, tmp_path / "int8.onnx", data=[calib[:100], calib[100:]])
    assert int8.int8 and int8.size_bytes < 0.5 * fp32.size_bytes
    with torch.no_grad():
        float_acc = _accuracy(trained, test_x, test_y)
    int8_acc = _accuracy(lambda t: int8.load(1)(int8.inputs(t))[0], test_x, test_y)
    assert float_acc > 0.85
    assert abs(int8_acc - float_acc) <= 0.02, (float_acc, int8_acc)
    assert 0 < int8.rel_error < 0.1


@pytest.mark.slow  # ~25 s: the PT2E quantizer and the XNNPACK lowering
def test_int8_executorch_keeps_accuracy(trained, tmp_path):
    test_x, test_y = digits("test").tensors
    calib = digits("train").tensors[0][:256]
    int8 = st.quantize(trained, test_x[:60], tmp_path / "int8.pte", data=[calib])
    with torch.no_grad():
        float_acc = _accuracy(trained, test_x, test_y)
    int8_acc = _accuracy(lambda t: int8.load(1)(int8.inputs(t))[0], test_x, test_y)
    assert int8.int8 and abs(int8_acc - float_acc) <= 0.02, (float_acc, int8_acc)


def test_benchmark_on_each_backend_names_it(trained):
    x = torch.randn(4, 1, 8, 8)
    for backend in backend_names():
        stats = st.benchmark(trained, x, threads=1, backend=backend, repeats=3, warmup=1)
        assert stats.backend == backend and stats.median_ms > 0 and stats.repeats == 3


def test_compare_times_files_and_modules_together(trained, tmp_path):
    x = torch.randn(4, 1, 8, 8)
    int8 = st.quantize(trained, x, tmp_path / "q.onnx", data=[torch.rand(64, 1, 8, 8)])
    table = st.compare(
        {"float": trained, "int8": int8}, x, threads=1, backend="onnxruntime", rounds=3
    )
    assert [r["backend"] for r in table.rows] == ["onnxruntime", "onnxruntime"]
    assert table.rows[0]["macs"] > 0 and table.rows[1]["macs"] is None
    assert "int8" in str(table) and "onnxruntime" in str(table)


def test_a_file_that_computes_something_else_is_refused(tmp_path):
    onnx = get_backend("onnx")

    def wrong(path, threads):
        session = onnx.load(path, threads)
        return type(session)(lambda inputs: lambda: [x * 1.5 for x in session(inputs)])

    BACKENDS.add("wrong-onnx", Backend("wrong-onnx", "wrong-onnx", ".onnx", (), onnx.write, wrong))
    try:
        with pytest.raises(st.ExportError, match="computes something else"):
            st.export(nn.Linear(4, 4), torch.randn(2, 4), tmp_path / "m.onnx", "wrong-onnx")
        r = st.export(
            nn.Linear(4, 4), torch.randn(2, 4), tmp_path / "m.onnx", "wrong-onnx", check=False
        )
        assert r.path.exists()
    finally:
        BACKENDS.remove("wrong-onnx")


def test_bad_requests_are_named(tmp_path):
    model, x = nn.Linear(4, 4), torch.randn(2, 4)
    with pytest.raises(st.InputError, match=r"ending in '\.pte'"):
        st.export(model, x, tmp_path / "m.onnx", "executorch")
    with pytest.raises(st.ConfigError, match="did you mean onnx"):
        st.export(model, x, tmp_path / "m.onnx", "onxx")
    with pytest.raises(st.ConfigError, match="does not exist"):
        st.export(model, x, tmp_path / "nowhere" / "m.onnx")
    with pytest.raises(st.ConfigError, match="available for onnx, executorch, not .openvino"):
        st.quantize(model, x, tmp_path / "m.xml", data=[x])
    with pytest.raises(st.InputError, match="calibration batch 0"):
        st.quantize(model, x, tmp_path / "q.onnx", data=[torch.randn(8, 5)])

    class Branchy(nn.Module):
        def forward(self, t):
            return t * 2 if t.sum().item() > 0 else t

    with pytest.raises(st.ExportError, match="torch.export cannot capture Branchy"):
        st.export(Branchy(), x, tmp_path / "b.onnx")
    assert not (tmp_path / "b.onnx").exists()


def test_missing_runtime_package_names_the_install(monkeypatch, tmp_path):
    ov = get_backend("openvino")
    monkeypatch.setitem(
        BACKENDS._table,
        "openvino",
        Backend(ov.format, ov.runtime, ov.suffix, ("not_a_package_xyz",), ov.write, ov.load),
    )
    with pytest.raises(st.ConfigError, match=r"pip install 'slimtorch\[deploy\]'"):
        st.export(nn.Linear(2, 2), torch.randn(1, 2), tmp_path / "m.xml")


def test_cli_export_and_bench_on_a_backend(tmp_path, capsys):
    from slimtorch.cli import main

    spec = "slimtorch.train.models:digits_cnn"
    out = tmp_path / "m.onnx"
    assert main(["export", spec, "-o", str(out), "--input", "2,1,8,8", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["format"] == "onnx" and row["max_abs_error"] < 1e-4 and out.exists()
    q = tmp_path / "q.onnx"
    assert main(["export", spec, "-o", str(q), "--input", "2,1,8,8", "--int8"]) == 0
    assert "onnx int8" in capsys.readouterr().out
    args = ["bench", spec, "--input", "2,1,8,8", "--threads", "1", "--rounds", "2"]
    assert main([*args, "--backend", "torch", "--backend", "onnxruntime"]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime" in printed and "torch" in printed
    assert main(["export", spec, "-o", str(tmp_path / "m.pte"), "--format", "onnx"]) == 2
    assert "ending in '.onnx'" in capsys.readouterr().err
