"""The zoo's known gaps, in one place: models exempt from the MAC rule of ``_oracle`` (with
why), and the zoo cases the oracle rejects today (strict xfail, with the measured numbers).

Keys are ``source:name`` (``torchvision:swin_t``, ``timm:rexnet_100``, ``hf:bert``). Numbers
are measured at ratio 0.5 with the inputs of ``tests/prune/test_channels_zoo.py``; MACs are
``result.after["macs"] / result.before["macs"]``.
"""

import pytest

# Models that may keep more than _oracle.MAX_MAC_RATIO of their MACs, and why: the one place
# (check_pruned has no other way to relax the rule).
MAC_EXEMPT: dict[str, str] = {}

# What the oracle exposes and a later issue fixes (channel coverage). strict: a fix makes the
# case pass, and the entry must then go.
_SWIN = (
    "keeps {:.1%} of its MACs: the window attention derives head_dim from its input width "
    "(torchvision Swin), so every stage's embedding dim is frozen; only the MLP hidden dims "
    "prune"
)
XFAIL: dict[str, str] = {
    "torchvision:swin_t": _SWIN.format(0.853),
    "torchvision:swin_s": _SWIN.format(0.834),
    "torchvision:swin_b": _SWIN.format(0.833),
    "torchvision:swin_v2_t": _SWIN.format(0.868),
    "torchvision:swin_v2_s": _SWIN.format(0.857),
    "torchvision:swin_v2_b": _SWIN.format(0.855),
}


def cases(source, names, slow=()):
    """``pytest.param`` per model, marked ``slow`` and ``xfail(strict=True)`` from XFAIL."""
    params = []
    for name in names:
        marks = [pytest.mark.slow] if name in slow else []
        if f"{source}:{name}" in XFAIL:
            marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[f"{source}:{name}"]))
        params.append(pytest.param(name, marks=marks))
    return params
