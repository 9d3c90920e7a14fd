"""Reading the two entries of a ``.slim`` zip within declared, checked bounds.

Every size is checked before anything is decompressed: exactly the expected entry names, each
once; only stored or deflated entries, not encrypted; the declared size under a per-entry
limit and, for compressed entries, under ``MAX_RATIO`` times the compressed size; the
compressed sizes within the file. ``zipfile`` then stops reading at the declared size and
checks the CRC, so a lying header cannot make the reader allocate more.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

from ..errors import FormatError

__all__ = ["MAX_RATIO", "read_entries"]

MAX_RATIO = 100  # JSON plans deflate ~5-20x; a zip bomb deflates ~1000x
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}


def read_entries(path: Path, limits: Mapping[str, int]) -> dict[str, bytes]:
    """The entries named in ``limits`` (name -> max bytes), each read once, all checked.

    Raises:
        FormatError: anything unexpected about the zip or its entries.
    """
    size = path.stat().st_size
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if sorted(names) != sorted(limits):
            extra = sorted(n for n in set(names) if names.count(n) > 1)
            detail = f"duplicate entries {extra}" if extra else f"entries {sorted(names)[:10]}"
            raise FormatError(
                f"it holds {detail}, not exactly a .slim file's {sorted(limits)}; it was "
                "not written by slimtorch.save() or was modified."
            )
        total = 0
        for info in infos:
            limit = limits[info.filename]
            if info.compress_type not in _METHODS:
                raise FormatError(
                    f"entry {info.filename!r} uses zip compression method "
                    f"{info.compress_type}; .slim files use only {sorted(_METHODS.values())}."
                )
            if info.flag_bits & 0x1:
                raise FormatError(f"entry {info.filename!r} is encrypted")
            if info.file_size > limit:
                raise FormatError(
                    f"entry {info.filename!r} declares {info.file_size:,} bytes, over "
                    f"the limit of {limit:,}."
                )
            if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
                raise FormatError(f"stored entry {info.filename!r} has inconsistent sizes")
            if info.file_size > MAX_RATIO * max(info.compress_size, 1) + 1024:
                raise FormatError(
                    f"entry {info.filename!r} would expand {info.compress_size:,} "
                    f"bytes into {info.file_size:,} (over {MAX_RATIO}x): refused as a zip bomb."
                )
            total += info.compress_size
        if total > size:
            raise FormatError("its entries declare more bytes than the file holds")
        out = {}
        for info in infos:
            with zf.open(info) as f:
                data = f.read(info.file_size + 1)
            if len(data) != info.file_size:
                raise FormatError(f"entry {info.filename!r} is not its declared size")
            out[info.filename] = data
        return out
