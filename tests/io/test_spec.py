import pytest
import torch
import torchvision

import slimtorch as st
from slimtorch.io.spec import default_input_shape, spec_of


def test_torchvision_and_timm_specs():
    m = st.load_model("torchvision:resnet18", num_classes=10)
    assert m.fc.out_features == 10
    assert spec_of(m) == {"spec": "torchvision:resnet18", "kwargs": {"num_classes": 10}}
    assert default_input_shape(
        "torchvision:inception_v3", st.load_model("torchvision:inception_v3")
    ) == (1, 3, 299, 299)
    t = st.load_model("timm:resnet18")
    assert default_input_shape("timm:resnet18", t) == (1, 3, 224, 224)


def test_factory_spec():
    m = st.load_model("torch.nn:Linear", in_features=3, out_features=2)
    assert m(torch.randn(1, 3)).shape == (1, 2)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("torchvision:resnet5", "did you mean resnet50"),
        ("timm:resnet_18", "did you mean"),
        ("resnet50", "has no ':'"),
        ("nonexistent_pkg.models:net", "cannot import 'nonexistent_pkg.models'"),
        ("torch.nn:Linearr", "did you mean Linear"),
        ("torch.nn.functional:relu", "calling 'torch.nn.functional:relu'"),
        ("torch.nn:Identity", None),
    ],
)
def test_bad_specs(spec, match):
    if match is None:  # control: a valid factory spec
        assert isinstance(st.load_model(spec), torch.nn.Identity)
        return
    with pytest.raises(st.ModelSpecError, match=match):
        st.load_model(spec)


def test_a_model_built_with_get_model_saves(tmp_path):
    # RegNet's builder computes its widths with real tensors, so a meta-device build fails.
    model = torchvision.models.get_model("regnet_y_400mf", num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    r = st.prune_channels(model, x, 0.5)
    loaded = st.load(st.save(r, tmp_path / "regnet.slim"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), r.model(x), rtol=0, atol=0)


def test_hf_provenance_is_left_out_of_the_spec(tmp_path):
    """``_name_or_path`` (set by from_pretrained to a local path or a hub repo) names no
    architecture: a spec leaves it out, so a pretrained model saves and reloads."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        vocab_size=50,
    )  # fmt: skip
    config._name_or_path = "/some/local/checkout"
    model = transformers.BertModel(config).eval()
    loaded = st.load(st.save(model, tmp_path / "b.slim"))
    assert loaded.config._name_or_path != "/some/local/checkout"
    ids = torch.randint(0, 50, (1, 6))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).last_hidden_state, model(ids).last_hidden_state)


def test_hf_config_lists_of_known_layer_kinds_are_accepted():
    """Per-layer kinds (``layer_types``) change length with the layer count; each string must
    be one the default list holds."""
    from slimtorch.errors import ModelSpecError
    from slimtorch.io.policy import check_hf_config

    defaults = {"layer_types": ["sliding_attention", "full_attention"]}
    check_hf_config({"layer_types": ["full_attention"] * 3}, defaults)
    with pytest.raises(ModelSpecError, match="layer_types"):
        check_hf_config({"layer_types": ["full_attention", "os.system"]}, defaults)
