"""Oracle 1 over the model zoo: every torchvision classifier, a sample of timm and Hugging
Face transformers. Each pruned model equals the zero-consumer reference (or its plan marks the
pruned groups inexact and says why), runs, keeps its output shape, has fewer MACs, and
reloads from a .slim file to identical outputs."""

import pytest
import timm
import torch
import torchvision
import transformers

import slimtorch as st
from _oracle import check_pruned, first_output

TV_NAMES = torchvision.models.list_models(module=torchvision.models)
TV_SLOW = {
    "regnet_y_128gf",
    "vit_h_14",
    "vit_l_16",
    "vit_l_32",
    "regnet_y_32gf",
    "regnet_x_32gf",
    "regnet_y_16gf",
    "regnet_x_16gf",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "efficientnet_v2_l",
    "efficientnet_v2_m",
    "convnext_large",
    "convnext_base",
    "swin_v2_b",
    "swin_v2_s",
    "swin_b",
    "densenet161",
    "densenet201",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet101_2",
    "vgg19_bn",
    "vgg19",
    "vgg16_bn",
    "maxvit_t",
}


def _size(name):
    if name.startswith("maxvit"):
        return 224
    if name == "vit_h_14":
        return 56
    return 96 if name.startswith("inception") else 64


def _roundtrip(result, args, tmp_path):
    path = st.save(result, tmp_path / "m.slim")
    loaded = st.load(path)
    with torch.no_grad():
        torch.testing.assert_close(
            first_output(loaded(*args)), first_output(result.model.eval()(*args)), rtol=0, atol=0
        )


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in TV_SLOW else n for n in TV_NAMES]
)
def test_torchvision_zoo(name, tmp_path):
    kwargs = {"image_size": _size(name)} if name.startswith("vit_") else {}
    model = st.load_model(f"torchvision:{name}", **kwargs).eval()
    x = torch.randn(2, 3, _size(name), _size(name))
    result = st.prune_channels(model, x, ratio=0.5)
    check_pruned(model, result, x)
    _roundtrip(result, (x,), tmp_path)


TIMM_NAMES = [
    "resnet50d",
    "efficientnet_b0",
    "mobilenetv3_large_100",
    "convnext_atto",
    "vit_tiny_patch16_224",
    "regnety_002",
    "rexnet_100",
    "ghostnet_100",
    "dla34",
    "repvgg_a0",
    "mobilevit_xxs",
    "poolformer_s12",
    "edgenext_xx_small",
    "lcnet_050",
    "seresnext26d_32x4d",
    "swin_tiny_patch4_window7_224",
    "coatnet_0_rw_224",
    "levit_128s",
    "mixer_s16_224",
]
TIMM_SLOW = {"resnet50d", "dla34", "seresnext26d_32x4d", "poolformer_s12", "mixer_s16_224"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in TIMM_SLOW else n for n in TIMM_NAMES]
)
def test_timm_sample(name, tmp_path):
    model = timm.create_model(name, pretrained=False).eval()
    size = model.pretrained_cfg["input_size"][1:]
    x = torch.randn(1, 3, *size)
    result = st.prune_channels(model, x, ratio=0.5)
    check_pruned(model, result, x)
    _roundtrip(result, (x,), tmp_path)


def _hf_models():
    tiny = dict(vocab_size=100, max_position_embeddings=32, bos_token_id=0, eos_token_id=0)
    bert = transformers.BertConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=3,
        **tiny,
    )
    gpt2 = transformers.GPT2Config(
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_positions=32,
        vocab_size=100,
        bos_token_id=0,
        eos_token_id=0,
    )
    llama = transformers.LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=128,
        pad_token_id=0,
        **tiny,
    )
    return {
        "bert": transformers.BertForSequenceClassification(bert),
        "gpt2": transformers.GPT2LMHeadModel(gpt2),
        "llama_gqa": transformers.LlamaForCausalLM(llama),
    }


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama_gqa"])
def test_hugging_face(name, tmp_path):
    model = _hf_models()[name].eval()
    ids = torch.randint(0, 100, (2, 12))
    inputs = {"input_ids": ids} if name == "bert" else {"input_ids": ids, "use_cache": False}
    result = st.prune_channels(model, inputs, ratio=0.5)

    check_pruned(model, result, inputs)
    # whole heads are pruned, metadata follows: the pruned model has fewer heads
    heads = [
        g
        for g in result.plan["groups"]
        if any("q" in m.rsplit(".", 1)[-1] or "query" in m or "c_attn" in m for m in g["modules"])
    ]
    assert heads and all(g["kept"] < g["size"] for g in heads)
    path = st.save(result, tmp_path / "m.slim")
    loaded = st.load(path)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(**inputs).logits, result.model(**inputs).logits, rtol=0, atol=0
        )
