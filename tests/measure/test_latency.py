import pytest
import torch
from torch import nn

import slimtorch as st


def test_benchmark_stats_and_thread_restore():
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU()).train()
    before = torch.get_num_threads()
    stats = st.benchmark(model, torch.randn(8, 64), threads=1, warmup=2, repeats=7)
    assert stats.threads == 1 and stats.batch_size == 8 and stats.repeats == 7
    assert 0 < stats.median_ms <= stats.p90_ms
    assert stats.iqr_ms >= 0
    assert torch.get_num_threads() == before
    assert model.training and model[0].training  # modes restored


def test_compare_interleaves_and_reports_ratio():
    big = nn.Sequential(nn.Linear(256, 1024), nn.Linear(1024, 256))
    small = nn.Linear(256, 16)
    table = st.compare({"big": big, "small": small}, torch.randn(4, 256), threads=1, rounds=5)
    names = [r["name"] for r in table.rows]
    assert names == ["big", "small"]
    assert table.rows[0]["params"] == 256 * 1024 + 1024 + 1024 * 256 + 256
    assert table.rows[1]["macs"] == 4 * 256 * 16
    assert all(r["repeats"] == 5 for r in table.rows)
    text = str(table)
    assert "1.00x" in text and "small" in text


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_bad_threads(threads):
    with pytest.raises(st.ConfigError, match="threads="):
        st.benchmark(nn.Linear(2, 2), torch.randn(1, 2), threads=threads)


def test_forward_that_raises_names_the_module():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 4), nn.Linear(5, 2))

        def forward(self, x):
            return self.body(x)

    with pytest.raises(st.ForwardError, match=r"module 'body\.1' \(Linear\).*\(1, 4\)"):
        st.benchmark(Broken(), torch.randn(1, 4), threads=1)
    with pytest.raises(st.ForwardError, match="body.1"):
        st.analyze(Broken(), torch.randn(1, 4))


def test_wrong_input_shape_names_first_module():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    with pytest.raises(st.ForwardError, match=r"module '0' \(Conv2d\).*\(1, 4, 16, 16\)"):
        st.analyze(net, torch.randn(1, 4, 16, 16))


def test_bad_inputs_and_models():
    with pytest.raises(st.InputError, match="empty"):
        st.analyze(nn.Linear(2, 2), ())
    with pytest.raises(st.InputError, match="nn.Module"):
        st.analyze("resnet50", torch.randn(1, 2))
