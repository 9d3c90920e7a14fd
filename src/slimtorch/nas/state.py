"""The resumable record of a search: every evaluated candidate, in a JSON file.

The file is validated with pydantic on load (a damaged or foreign file is refused with the
reason, never half-trusted) and rewritten atomically after each candidate, so a search that
is killed loses at most the candidate it was timing. A resumed search regenerates the same
candidates from its seed and takes the recorded ones from the file instead of measuring them
again, so it follows the same path and ends where the uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from .._files import atomic_write
from ..errors import ConfigError, FormatError

__all__ = ["Candidate", "SearchState", "fingerprint", "load_state", "save_state"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicyRecord(_Strict):
    remove: list[str] = Field(default_factory=list)
    width: dict[str, float] = Field(default_factory=dict)
    rewrite: dict[str, str] = Field(default_factory=dict)


class Candidate(_Strict):
    """One evaluated policy: its solved channel ratio, measured latency, proxy loss."""

    policy: PolicyRecord
    level: float | None = None
    ms: float | None = None
    checked_ms: float | None = None  # a second timing, taken if the candidate is chosen
    macs: int | None = None
    params: int | None = None
    proxy: float | None = None
    feasible: bool = False
    error: str | None = None
    seconds: float = 0.0


class SearchState(_Strict):
    format: Literal["slimtorch-search"] = "slimtorch-search"
    version: Literal[1] = 1
    model: str
    options: dict[str, Any]
    original_ms: float
    target_ms: float
    seeds: list[PolicyRecord] | None = None  # the timed seeds, fixed for a resumed run
    candidates: list[Candidate] = Field(default_factory=list)


def fingerprint(model: nn.Module) -> str:
    """A hash of the parameter names, shapes and values: a state file is for one model."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().view(-1).float().numpy().tobytes())
    return h.hexdigest()[:32]


def load_state(path: str | os.PathLike, model_key: str, options: dict[str, Any]) -> SearchState:
    try:
        raw = Path(path).read_text()
        state = SearchState.model_validate_json(raw)
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"cannot read the search state {str(path)!r}: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "the file"
        raise FormatError(
            f"{str(path)!r} is not a slimtorch search state ({where}: {first['msg']}); delete "
            "it to start afresh, or pass another state= path."
        ) from None
    if state.model != model_key:
        raise ConfigError(
            f"the search state {str(path)!r} was written for another model (or other weights); "
            "pass a new state= path to search this one."
        )
    if state.options != options:
        changed = sorted(
            k for k in set(state.options) | set(options) if state.options.get(k) != options.get(k)
        )
        raise ConfigError(
            f"the search state {str(path)!r} was written with other options ({', '.join(changed)}"
            "); resume with the same options, or pass a new state= path."
        )
    return state


def save_state(path: str | os.PathLike, state: SearchState) -> None:
    atomic_write(path, json.dumps(state.model_dump(mode="json"), indent=1))
