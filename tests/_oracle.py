"""Oracle 1 of DESIGN.md: the pruned model equals the original with the consumers' input
weights for the removed channels set to zero."""

import copy

import torch


def zero_consumer_reference(model, plan):
    ref = copy.deepcopy(model)
    tensors = dict(ref.named_parameters(remove_duplicate=False))
    with torch.no_grad():
        for group in plan["groups"]:
            for name, dims in group["consumers"].items():
                for dim, positions in dims.items():
                    tensors[name].index_fill_(int(dim), torch.tensor(positions), 0.0)
    return ref


def check_pruned(model, result, inputs, *, rtol=1e-4, atol=1e-5):
    """Pruned output equals the reference where every pruned group is exact; the pruned model
    runs, keeps its output shape and has fewer MACs (or says why nothing was pruned)."""
    args = inputs if isinstance(inputs, tuple) else () if isinstance(inputs, dict) else (inputs,)
    kwargs = inputs if isinstance(inputs, dict) else {}
    model.eval()
    pruned = result.model.eval()
    with torch.no_grad():
        out = first_output(pruned(*args, **kwargs))
        expected = first_output(zero_consumer_reference(model, result.plan)(*args, **kwargs))
    assert out.shape == expected.shape
    pruned_groups = [g for g in result.plan["groups"] if g["removed"]]
    if not pruned_groups:
        assert result.warnings, "nothing was pruned and no warning says why"
        return False
    assert result.after["macs"] < result.before["macs"]
    assert result.after["params"] < result.before["params"]
    if all(g["exact"] for g in pruned_groups):
        scale = expected.abs().max().item() + 1e-12
        torch.testing.assert_close(out, expected, rtol=rtol, atol=atol * max(scale, 1.0))
        return True
    return False


def first_output(out):
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, dict):
        return next(iter(out.values()))
    return out[0]
