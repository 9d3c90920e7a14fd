"""Per-op dimension rules: one engine (``engine.DimContext``), one registry, rules by op family.

Importing this package registers the built-in rules of every family.
"""

from . import conv, elementwise, matmul, norm, shape  # noqa: F401  (register the rules)
from .engine import RULES, DimContext, Rule, register_rule, rule_for, tensor_args

__all__ = ["RULES", "DimContext", "Rule", "register_rule", "rule_for", "tensor_args"]
