"""PrunableMultiheadAttention is nn.MultiheadAttention's exact twin, with every mask kind."""

import pytest
import torch
from torch import nn

from slimtorch.errors import ConfigError
from slimtorch.nn import PrunableMultiheadAttention, build_module, module_config

L, S, N, E = 5, 7, 3, 16


def _masks():
    pad = torch.zeros(N, S, dtype=torch.bool)
    pad[0, 4:] = True
    causal = torch.ones(L, S, dtype=torch.bool).triu(1)
    return [
        {},
        {"need_weights": False},
        {"key_padding_mask": pad},
        {"attn_mask": causal},
        {"attn_mask": causal, "key_padding_mask": pad, "need_weights": False},
        {"attn_mask": torch.randn(L, S)},
        {"average_attn_weights": False},
    ]


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kdim", [None, 12])
@pytest.mark.parametrize("masks", _masks(), ids=lambda m: "+".join(m) or "plain")
def test_twin_equals_torch(batch_first, kdim, masks):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(E, 4, batch_first=batch_first, kdim=kdim, vdim=kdim).eval()
    twin = PrunableMultiheadAttention.from_torch(mha).eval()
    q = torch.randn(N, L, E) if batch_first else torch.randn(L, N, E)
    kv = torch.randn(N, S, kdim or E) if batch_first else torch.randn(S, N, kdim or E)
    with torch.no_grad():
        want, want_w = mha(q, kv, kv, **masks)
        got, got_w = twin(q, kv, kv, **masks)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    if want_w is None:
        assert got_w is None
    else:
        torch.testing.assert_close(got_w, want_w, atol=1e-6, rtol=1e-5)


def test_config_rebuilds_the_architecture():
    twin = PrunableMultiheadAttention(E, 4, kdim=12, batch_first=True)
    again = build_module("PrunableMultiheadAttention", module_config(twin))
    assert {k: tuple(v.shape) for k, v in again.state_dict().items()} == {
        k: tuple(v.shape) for k, v in twin.state_dict().items()
    }


def test_variants_without_a_twin_are_refused():
    with pytest.raises(ConfigError, match="add_bias_kv"):
        PrunableMultiheadAttention.from_torch(nn.MultiheadAttention(E, 4, add_bias_kv=True))
