"""Oracle 1 of DESIGN.md: the pruned model equals the original with the consumers' input
weights for the removed channels set to zero.

``check_pruned`` asserts; it never returns early and returns nothing. Its bounds are named
constants below, each with the measurement it comes from (ratio 0.5 over the zoo of
``tests/prune/test_channels_zoo.py``, random init)."""

import copy

import torch

from _zoo import INEXACT_BOUND, MAC_EXEMPT
from slimtorch.edit import replace_module_
from slimtorch.prune.channels.twins import twin_swaps

# Pruning at ratio 0.5 must remove at least 30% of the MACs. Halving every prunable width
# leaves about 25% of a CNN's MACs (measured 25-47% over torchvision's CNNs); a model above
# 70% is mostly unpruned (attention frozen, a dim that no rule covers). Exceptions, with
# their reason, are listed in ``_zoo.MAC_EXEMPT``.
MAX_MAC_RATIO = 0.70

# Exact groups: the pruned output minus the reference, elementwise, within this share of the
# largest input-dependent output value (``signal``): float32 noise measures at most 1e-4 over
# the zoo (timm resnet50d, the smallest spread; 6e-5 for AlexNet, 1e-6 for most), so 1e-3 is
# 10x that, while scaling one kept filter by 1% measures 2.8e-2 (tests/test_oracle.py).
EXACT_ATOL = 1e-3

# Inexact groups (a normalization or softmax across the pruned dim, ``exact: false``): the
# pruned model computes statistics over the kept channels, the reference over all of them,
# so the outputs differ. The relative error ``||out - ref|| / ||ref||`` stays within this
# bound: measured 0.07-0.25 over the zoo's inexact models at ratio 0.5 (edgenext_xx_small the
# largest), while the same model pruned with the wrong channels (random importance instead of
# l1) measures 0.95-1.54 against the reference. 0.4 leaves 60% headroom over the worst honest
# error and more than 2x margin under the best broken one. It is coarse: it rejects wrong or
# shuffled channels, not a swap of two channels (0.15 in test_oracle's LayerNorm MLP); exact
# groups are where the oracle is sharp.
INEXACT_REL_ERR = 0.4

# The input must move the output: ``||signal|| / ||ref||`` (the spread) at least this. At
# random init an output can be a bias whatever the input (timm's Mixer and torchvision's ViT
# heads are zero, GoogLeNet's features 3e-11 under its fc bias): then any model matches the
# reference. At spread 1e-3, float32 rounding of the output (6e-8 of it) is 6e-5 of the
# signal, well under EXACT_ATOL. The zoo's smallest is 4e-3 (timm resnet50d) once its models
# are made informative (test_channels_zoo._informative_).
MIN_SPREAD = 1e-3


def zero_consumer_reference(model, plan):
    ref = copy.deepcopy(model)
    swapped = set(plan.get("swapped", []))  # modules prune_channels swapped for exact twins
    for name, twin in twin_swaps(ref):
        if name in swapped:
            replace_module_(ref, name, twin, record=False)
    tensors = dict(ref.named_parameters(remove_duplicate=False))
    with torch.no_grad():
        for group in plan["groups"]:
            for name, dims in group["consumers"].items():
                for dim, positions in dims.items():
                    tensors[name].index_fill_(int(dim), torch.tensor(positions), 0.0)
    return ref


def signal(ref):
    """The part of a batch of outputs that depends on the input: ``ref`` minus its batch
    mean. A constant (a bias, what a random network outputs for any input) cancels, so an
    error is measured against what the network computes, not against its bias."""
    return ref - ref.mean(0, keepdim=True)


def oracle_errors(model, result, inputs):
    """The pruned output, the reference output and the numbers ``check_pruned`` bounds."""
    args = inputs if isinstance(inputs, tuple) else () if isinstance(inputs, dict) else (inputs,)
    kwargs = inputs if isinstance(inputs, dict) else {}
    model.eval()
    pruned = result.model.eval()
    with torch.no_grad():
        out = first_output(pruned(*args, **kwargs))
        ref = first_output(zero_consumer_reference(model, result.plan)(*args, **kwargs))
    assert out.shape == ref.shape, f"output shape {tuple(out.shape)} != {tuple(ref.shape)}"
    assert ref.shape[0] >= 2, "the oracle needs a batch of at least 2 inputs (see signal)"
    sig = signal(ref)
    return {
        "out": out,
        "ref": ref,
        "spread": (sig.norm() / ref.norm()).item() if ref.norm() > 0 else 0.0,
        "signal_scale": sig.abs().max().item(),
        "exact_err": ((out - ref).abs().max() / sig.abs().max()).item(),
        "rel_err": ((out - ref).norm() / ref.norm()).item(),
        "mac_ratio": result.after["macs"] / result.before["macs"],
    }


def check_pruned(model, result, inputs, *, name=None, max_mac_ratio=MAX_MAC_RATIO):
    """Asserts that ``result`` (``prune_channels(model, inputs, ...)``) pruned ``model``
    and kept its function.

    - The output keeps its shape and depends on the input (``MIN_SPREAD``).
    - Something was pruned: fewer params and MACs, and ``after / before`` MACs at most
      ``max_mac_ratio`` (default ``MAX_MAC_RATIO``) unless ``name`` is in ``_zoo.MAC_EXEMPT``.
    - All pruned groups exact: the output equals the zero-consumer reference within
      ``EXACT_ATOL`` of the input-dependent output scale.
    - Some pruned group inexact: ``||out - ref|| / ||ref|| <= INEXACT_REL_ERR``.
    """
    e = oracle_errors(model, result, inputs)
    who = name or type(model).__name__
    assert e["spread"] >= MIN_SPREAD, (
        f"{who}: the output does not depend on the input (spread {e['spread']:.1e} < "
        f"{MIN_SPREAD:g}): comparing it with the reference proves nothing"
    )
    pruned_groups = [g for g in result.plan["groups"] if g["removed"]]
    why = "; ".join(result.warnings)[:600]
    assert pruned_groups, f"{who}: nothing was pruned ({why or 'no warning says why'})"
    assert result.after["params"] < result.before["params"], f"{who}: no params removed"
    assert result.after["macs"] < result.before["macs"], f"{who}: no MACs removed"
    if name not in MAC_EXEMPT:
        assert e["mac_ratio"] <= max_mac_ratio, (
            f"{who}: keeps {e['mac_ratio']:.1%} of its MACs (> {max_mac_ratio:.0%}); "
            f"warnings: {why}"
        )
    inexact = [g for g in pruned_groups if not g["exact"]]
    if not inexact:
        torch.testing.assert_close(
            e["out"],
            e["ref"],
            rtol=0,
            atol=EXACT_ATOL * e["signal_scale"],
            msg=lambda m: (
                f"{who}: exact groups, but the output differs from the reference "
                f"(max error {e['exact_err']:.1e} of the signal scale)\n{m}"
            ),
        )
    else:
        bound = INEXACT_BOUND.get(name, (INEXACT_REL_ERR, ""))[0]
        assert e["rel_err"] <= bound, (
            f"{who}: {len(inexact)} inexact group(s); relative error {e['rel_err']:.3f} > "
            f"{bound} (first: {inexact[0]['modules'][:3]})"
        )


def first_output(out):
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, dict):
        return next(iter(out.values()))
    return out[0]
