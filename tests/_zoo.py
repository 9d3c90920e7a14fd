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
XFAIL: dict[str, str] = {}


def cases(source, names, slow=()):
    """``pytest.param`` per model, marked ``slow`` and ``xfail(strict=True)`` from XFAIL."""
    params = []
    for name in names:
        marks = [pytest.mark.slow] if name in slow else []
        if f"{source}:{name}" in XFAIL:
            marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[f"{source}:{name}"]))
        params.append(pytest.param(name, marks=marks))
    return params
