"""Writing files so that a crash never leaves a half-written one: the one helper for it.

``atomic_write`` writes to a temporary file in the destination's folder, flushes and
``fsync``s it, then ``os.replace``s it over the destination (atomic on POSIX and Windows), and
``fsync``s the folder so the rename itself survives a power cut. A process killed at any
moment leaves either the old file or the new one, never a mix (at worst a stray
``.NAME.*.tmp`` next to it). ``check_output_path`` lets a command refuse a bad ``-o`` before
it does any work.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .errors import ConfigError

__all__ = ["atomic_write", "check_output_path", "open_atomic"]


def check_output_path(path: str | os.PathLike, what: str = "output") -> Path:
    """Returns ``path`` if a file can be written there, else raises ``ConfigError``.

    Checked: the folder exists and is writable, and ``path`` is not a folder.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a folder; give a file name inside it.")
    if not folder.is_dir():
        raise ConfigError(
            f"{what} {str(path)!r}: the folder {str(folder)!r} does not exist; create it first "
            "(mkdir -p) or write elsewhere."
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {str(path)!r}: the folder {str(folder)!r} is not writable.")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{what} {str(path)!r} exists and is not writable.")
    return path


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary file object whose content replaces ``path`` only if the block completes.

    Example:
        >>> with open_atomic("out.bin") as f:
        ...     f.write(b"data")
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if path.exists():  # keep the destination's permissions, not mkstemp's 0600
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[IO[bytes]], None]) -> Path:
    """Writes ``data`` (bytes, text as UTF-8, or ``fn(file)``) to ``path`` atomically.

    Returns:
        ``path`` as a ``Path``.
    """
    with open_atomic(path) as f:
        if callable(data):
            data(f)
        else:
            f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)
