"""Built-in data sets and the batch streams: shapes, splits, order, sharding, positions."""

import pytest
import torch
from torch.utils.data import TensorDataset

from slimtorch.errors import ConfigError, InputError
from slimtorch.train import digits, image_folder, mnist1d, sentences
from slimtorch.train.batches import DatasetStream, IterableStream, Position, split_batch


def test_digits_split_by_a_fixed_rule():
    train, test = digits("train"), digits("test")
    assert (len(train), len(test)) == (1437, 360)
    x, y = test[1]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and float(x.min()) >= 0
    assert float(train.tensors[0].max()) == 1.0 and set(train.tensors[1].tolist()) == set(range(10))
    from sklearn.datasets import load_digits

    raw = load_digits()
    torch.testing.assert_close(x.flatten(), torch.tensor(raw.data[5] / 16, dtype=torch.float32))
    assert int(y) == raw.target[5]  # test item 1 is image 5: every fifth image
    with pytest.raises(ConfigError, match="split='val' is unknown"):
        digits("val")


@pytest.mark.slow  # generating MNIST-1D locally takes ~5 s
def test_mnist1d_generated_offline():
    import random

    state = random.getstate()
    train, test = mnist1d("train"), mnist1d("test")
    assert random.getstate() == state  # its generator seeding does not leak
    assert (len(train), len(test)) == (4000, 1000)
    assert train[0][0].shape == (1, 40) and set(test.tensors[1].tolist()) == set(range(10))


def test_sentences_are_deterministic_prose():
    a, b = sentences(), sentences()
    assert a == b and len(a) > 500 and len(set(a)) == len(a)
    assert all(s[0].isupper() and s[-1] in ".!?" and 6 <= len(s.split()) <= 40 for s in a)
    assert sentences(limit=10) == a[:10]


def test_stdlib_sentences_are_a_larger_corpus():
    common, every = sentences(), sentences(modules="stdlib")
    assert every == sentences(modules="stdlib") and len(set(every)) == len(every)
    assert len(every) > 2.5 * len(common)  # 3,098 against 945 on Python 3.11
    assert len(set(common) & set(every)) > 0.9 * len(common)
    with pytest.raises(ConfigError, match="modules='all': use 'common' or 'stdlib'"):
        sentences(modules="all")


def test_image_folder(tmp_path):
    from PIL import Image

    for cls, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("RGB", (20, 12), color).save(tmp_path / cls / f"{i}.png")
    data = image_folder(tmp_path, image_size=8)
    x, y = data[3]
    assert len(data) == 4 and x.shape == (3, 8, 8) and y == 1 and float(x[2].mean()) == 1.0
    with pytest.raises(InputError, match="not a folder"):
        image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="one folder per class"):
        image_folder(tmp_path / "empty")


def _ids(stream, pos, n):
    it = stream.iterate(pos)
    return [next(it) for _ in range(n)]


def test_ranks_split_the_global_batch_and_resume_across_world_sizes():
    data = TensorDataset(torch.arange(40))
    one = DatasetStream(data, 8, 0, 1, seed=1, workers=0)
    r0, r1 = (DatasetStream(data, 4, r, 2, seed=1, workers=0) for r in (0, 1))
    for (b, p), (b0, p0), (b1, p1) in zip(
        _ids(one, Position(), 6), _ids(r0, Position(), 6), _ids(r1, Position(), 6)
    ):
        assert torch.equal(b[0], torch.cat([b0[0], b1[0]])) and p == p0 == p1
    # 5 global batches of 8 per epoch; epoch 1 is another permutation
    firsts = [b[0] for b, _ in _ids(one, Position(), 10)]
    assert sorted(torch.cat(firsts[:5]).tolist()) == list(range(40))
    assert not torch.equal(torch.cat(firsts[:5]), torch.cat(firsts[5:]))
    # A run of 2 x 4 stopped after 16 samples continues on 1 x 8 at the same sample.
    ((_, pos),) = _ids(r0, Position(0, 8), 1)
    assert pos == Position(0, 16)
    rest = torch.cat([b[0] for b, _ in _ids(one, pos, 3)])
    assert torch.equal(rest, torch.cat(firsts[2:5]))


def test_iterable_shards_and_skips():
    batches = [torch.full((2,), k) for k in range(7)]
    r1 = IterableStream(batches, 1, 2)
    got = [(int(b[0]), p.offset) for b, p in _ids(r1, Position(), 4)]
    assert got == [(1, 2), (3, 4), (5, 6), (1, 2)]  # the 7th batch is dropped: no pair
    assert [int(b[0]) for b, _ in _ids(r1, Position(0, 4), 2)] == [5, 1]


def test_batch_forms():
    cpu = torch.device("cpu")
    b = split_batch({"input_ids": torch.zeros(3, 5), "labels": [0, 1, 2]}, cpu)
    assert b.args == () and list(b.kwargs) == ["input_ids"] and b.labels.tolist() == [0, 1, 2]
    b = split_batch(((torch.zeros(4, 2), torch.ones(4, 1)), torch.zeros(4)), cpu)
    assert len(b.args) == 2 and b.size == 4
    b = split_batch((torch.zeros(4, 2),), cpu)
    assert b.labels is None and b.size == 4
