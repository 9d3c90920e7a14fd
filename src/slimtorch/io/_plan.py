"""``plan.json``: parsing within bounds, its schema, and the checksum over plan and weights.

The checksum (format 2) is SHA-256 over the canonical plan (sorted keys, no whitespace, the
checksum field left out), its length and the weights bytes, so no edit, alias or attribute in
the plan can change without the file failing to load. It proves integrity, not authorship:
anyone can recompute it (sign files externally, see docs/format.md).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..errors import FormatError

__all__ = ["FORMAT", "READABLE", "check_plan", "checksum", "parse_plan"]

FORMAT = "slimtorch/2"
READABLE = ("slimtorch/1", FORMAT)
MAX_PLAN_BYTES = 64 << 20
MAX_DEPTH = 32
MAX_EDITS = 100_000
_KEYS = {
    "slimtorch/1": {"format", "spec", "edits", "aliases", "packed", "weights_sha256"},
    FORMAT: {"format", "spec", "edits", "aliases", "packed", "checksum"},
}
DTYPES = ("float16", "bfloat16", "float32", "float64")


def _depth(value: Any) -> int:
    """Nesting depth of JSON data, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_DEPTH:
            return d
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return deepest


def canonical(plan: dict[str, Any]) -> bytes:
    body = {k: v for k, v in plan.items() if k != "checksum"}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def checksum(plan: dict[str, Any], weights: bytes) -> str:
    """SHA-256 over the canonical plan (without its checksum) and the weights."""
    body = canonical(plan)
    h = hashlib.sha256(b"slimtorch/2\0")
    h.update(len(body).to_bytes(8, "big"))
    h.update(body)
    h.update(weights)
    return h.hexdigest()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_plan(data: bytes) -> dict[str, Any]:
    """The plan as a dict, with its version checked first; raises FormatError otherwise."""
    if len(data) > MAX_PLAN_BYTES:
        raise FormatError(f"plan.json is {len(data):,} bytes, over the {MAX_PLAN_BYTES:,} limit")
    try:
        plan = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise FormatError(f"plan.json is not valid JSON ({str(exc)[:200]})") from exc
    if not isinstance(plan, dict):
        raise FormatError("plan.json does not hold a JSON object")
    version = plan.get("format")
    if version not in READABLE:
        newer = isinstance(version, str) and version.startswith("slimtorch/")
        raise FormatError(
            f"the file is format {str(version)[:40]!r}; this slimtorch reads {list(READABLE)}"
            + (": upgrade slimtorch (pip install -U slimtorch) to read it." if newer else ".")
        )
    if _depth(plan) > MAX_DEPTH:
        raise FormatError(f"plan.json nests deeper than {MAX_DEPTH} levels")
    return plan


def _str_map(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise FormatError(f"plan.json {what} is not an object with string keys")
    return value


def check_plan(plan: dict[str, Any]) -> None:
    """The plan's top level: known keys, right types, bounded counts (edits are checked by
    the edit layer as they are replayed)."""
    keys = _KEYS[plan["format"]]
    if set(plan) != keys:
        raise FormatError(
            f"plan.json has keys {sorted(plan)[:12]}, expected {sorted(keys)} for {plan['format']}"
        )
    spec = _str_map(plan["spec"], "spec")
    if set(spec) - {"spec", "kwargs"} or not isinstance(spec.get("spec"), str):
        raise FormatError("plan.json has no valid model spec")
    _str_map(spec.get("kwargs", {}), "spec kwargs")
    edits = plan["edits"]
    if not isinstance(edits, list) or not all(isinstance(e, dict) for e in edits):
        raise FormatError("plan.json has an invalid edit list")
    if len(edits) > MAX_EDITS:
        raise FormatError(f"plan.json lists {len(edits):,} edits, over the {MAX_EDITS:,} limit")
    aliases = _str_map(plan["aliases"], "aliases")
    if not all(isinstance(v, str) for v in aliases.values()):
        raise FormatError("plan.json aliases must map tensor names to tensor names")
    for key, meta in _str_map(plan["packed"], "packed").items():
        if (
            not isinstance(meta, dict)
            or set(meta) != {"shape", "dtype"}
            or meta["dtype"] not in DTYPES
            or not isinstance(meta["shape"], list)
            or len(meta["shape"]) > 8
            or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in meta["shape"]
            )
        ):
            raise FormatError(
                f"plan.json packed entry {key[:100]!r} needs a shape (up to 8 sizes >= 0) and a "
                f"dtype in {list(DTYPES)}"
            )
    digest = plan.get("checksum", plan.get("weights_sha256"))
    if not isinstance(digest, str):
        raise FormatError("plan.json has no checksum")


def verify(plan: dict[str, Any], weights: bytes) -> None:
    """Raises FormatError unless the checksum matches (format 1 covers the weights only)."""
    if plan["format"] == "slimtorch/1":
        ok = hashlib.sha256(weights).hexdigest() == plan["weights_sha256"]
    else:
        ok = checksum(plan, weights) == plan["checksum"]
    if not ok:
        raise FormatError(
            "the plan and weights do not match the checksum in plan.json; the file was "
            "modified or damaged after saving."
        )
