"""Hand-crafting .slim files for the hostile-input tests and the fuzzer."""

import json
import zipfile
from pathlib import Path

from slimtorch.io._plan import checksum


def read(path):
    """(plan dict, weights bytes) of a .slim file."""
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("plan.json")), zf.read("weights.safetensors")


def write(path, plan, weights, *, reseal=True, plan_method=zipfile.ZIP_DEFLATED, extra=()):
    """Writes a .slim file; ``reseal`` recomputes the checksum, as an attacker can."""
    plan = dict(plan)
    if reseal and plan.get("format") == "slimtorch/2":
        plan["checksum"] = checksum(plan, weights)
    body = plan if isinstance(plan, bytes) else json.dumps(plan).encode()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("plan.json", body, compress_type=plan_method)
        zf.writestr("weights.safetensors", weights, compress_type=zipfile.ZIP_STORED)
        for name, data in extra:
            zf.writestr(name, data)
    return Path(path)


def lie_size(data: bytes, name: str, size: int) -> bytes:
    """The zip with the central directory's uncompressed size of ``name`` set to ``size``."""
    out = bytearray(data)
    pos = out.find(b"PK\x01\x02")
    while pos >= 0:
        n = int.from_bytes(out[pos + 28 : pos + 30], "little")
        if out[pos + 46 : pos + 46 + n] == name.encode():
            out[pos + 24 : pos + 28] = size.to_bytes(4, "little")
        pos = out.find(b"PK\x01\x02", pos + 4)
    return bytes(out)
