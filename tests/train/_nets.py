"""Small models and data shared by the train tests."""

import torch
from torch import nn
from torch.utils.data import TensorDataset


def mlp(out: int = 10, hidden: int = 32) -> nn.Module:
    """An MLP on flattened 8x8 digits (no BatchNorm: per-batch statistics would make
    micro-batch and whole-batch gradients differ)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, out))


def blobs(n: int = 256, classes: int = 10, seed: int = 0) -> TensorDataset:
    """Linearly separable-ish random data shaped like digits: x (n, 1, 8, 8), y in 0..9."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, 64, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y] + 0.5 * torch.randn(n, 64, generator=g)
    return TensorDataset(x.reshape(n, 1, 8, 8), y)


class Encoder(nn.Module):
    """A toy embedding model with a Hugging Face-like interface: keyword inputs, a dict
    output with ``last_hidden_state`` of shape (B, L, width)."""

    def __init__(self, width: int = 16, vocab: int = 50) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.mix = nn.Linear(width, width)

    def forward(self, input_ids, attention_mask=None):
        h = self.mix(self.embed(input_ids)).tanh()
        return {"last_hidden_state": h}


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
