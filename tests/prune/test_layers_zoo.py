"""Depth pruning over the zoo's fast sample (the cheapest torchvision classifier of each
family and every one under 1 GFLOPS, timm's small sample models, Hugging Face transformers).
Each model loses its lowest-scored block and must then (1) no longer hold it, (2) compute
exactly what the original computes with that block skipped at run time (its output replaced
by its input), (3) have fewer MACs, and (4) reload from a .slim file to identical outputs.
Models without a removable block must say so with a PruneError."""

import pytest
import torch
from test_channels_zoo import (
    TIMM_NAMES,
    TIMM_SLOW,
    TV_NAMES,
    TV_SLOW,
    hf_case,
    timm_case,
    torchvision_case,
)

import slimtorch as st
from _oracle import first_output
from slimtorch.graph.blocks import find_blocks
from slimtorch.graph.trace import trace
from slimtorch.prune.depth.score import skipping

# Models with no removable block by default, and why (each must raise the PruneError).
_CONCAT = "dense layers concatenate: each changes the width that every later layer reads"
_ATTRS = "Inception blocks are named attributes, none with equal input and output shapes"
_ONE = "one block per stage, and each changes the width or stride"
NO_BLOCKS = {
    "torchvision:densenet121": _CONCAT,
    "torchvision:googlenet": _ATTRS,
    "torchvision:inception_v3": _ATTRS,
    "timm:test_byobnet": _ONE,
    "timm:test_efficientnet": _ONE,
    "timm:test_nfnet": _ONE,
}


def params(names, slow):
    """The channel zoo's fast sample, one case per model (its xfails are about channels,
    not depth). Its slow models are not collected: pruning, skipping and round-tripping each
    would take the suite past its 30-minute budget on 2 cores."""
    return [n for n in names if n not in slow]


def _run(model, inputs):
    with torch.no_grad():
        return model(**inputs) if isinstance(inputs, dict) else model(inputs)


def check_removed(model, inputs, tmp_path, key):
    if key in NO_BLOCKS:
        with pytest.raises(st.PruneError, match="no removable block"):
            st.prune_layers(model, inputs, n=1, data=[inputs])
        return None
    result = st.prune_layers(model, inputs, n=1, data=[inputs])
    (name,) = result.plan["layers"]["removed"]
    blocks = {b.name: b for b in find_blocks(model, trace(model, inputs, meta=True)).default}
    block = blocks[name]
    before = dict(model.named_modules())
    after = dict(result.model.named_modules())
    assert len(after) < len(before)
    assert result.after["macs"] < result.before["macs"]
    with skipping(model, [block]), torch.no_grad():
        skipped = first_output(_run(model.eval(), inputs))
    pruned = first_output(_run(result.model.eval(), inputs))
    torch.testing.assert_close(pruned, skipped, rtol=1e-4, atol=1e-5)
    assert (pruned - first_output(_run(model, inputs))).abs().max() > 0  # the block did work
    loaded = st.load(st.save(result, tmp_path / "m.slim"))
    torch.testing.assert_close(first_output(_run(loaded.eval(), inputs)), pruned, rtol=0, atol=0)
    return result


@pytest.mark.parametrize("name", params(TV_NAMES, TV_SLOW))
def test_torchvision_depth(name, tmp_path):
    model, x = torchvision_case(name)
    x = x[:1]
    check_removed(model, x, tmp_path, f"torchvision:{name}")


@pytest.mark.parametrize("name", params(TIMM_NAMES, TIMM_SLOW))
def test_timm_depth(name, tmp_path):
    model, x = timm_case(name)
    check_removed(model, x[:1], tmp_path, f"timm:{name}")


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama_gqa"])
def test_hugging_face_depth(name, tmp_path):
    model, inputs = hf_case(name)
    layers = model.config.num_hidden_layers
    result = check_removed(model, inputs, tmp_path, f"hf:{name}")
    assert result.model.config.num_hidden_layers == layers - 1


def test_no_blocks_names_zoo_models():
    zoo = {f"torchvision:{n}" for n in TV_NAMES} | {f"timm:{n}" for n in TIMM_NAMES}
    assert set(NO_BLOCKS) <= zoo
