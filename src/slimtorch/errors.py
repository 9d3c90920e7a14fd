"""Exception types raised for user mistakes.

Every message names the offending value and says what to do instead. They subclass
``ValueError``/``TypeError`` so existing ``except`` clauses keep working.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ExportError",
    "ConvertError",
    "FormatError",
    "ForwardError",
    "InputError",
    "ModelSpecError",
    "PruneError",
    "RecipeError",
    "SlimTorchError",
    "TraceError",
]


class SlimTorchError(Exception):
    """Base class of every error slimtorch raises on purpose."""


class ModelSpecError(SlimTorchError, ValueError):
    """A model spec such as ``torchvision:resnet50`` could not be resolved."""


class InputError(SlimTorchError, ValueError):
    """Example inputs are missing, malformed or do not fit the model."""


class ForwardError(SlimTorchError, ValueError):
    """The model's forward pass raised; the message names the module that failed.

    Attributes:
        module: qualified name of the innermost failing module ("" for the root).
    """

    def __init__(self, message: str, module: str = "") -> None:
        super().__init__(message)
        self.module = module


class ConfigError(SlimTorchError, ValueError):
    """An option is out of range or names something that does not exist."""


class TraceError(SlimTorchError, ValueError):
    """The model could not be traced into a graph."""


class PruneError(SlimTorchError, ValueError):
    """A pruning request cannot be carried out as asked."""


class ConvertError(SlimTorchError, ValueError):
    """A structure conversion cannot be applied to the given layer."""


class FormatError(SlimTorchError, ValueError):
    """A ``.slim`` file is malformed, truncated or tampered with."""


class CheckpointError(SlimTorchError, ValueError):
    """A training checkpoint is missing, corrupt, or was written for another model."""


class ExportError(SlimTorchError, ValueError):
    """A model does not export to a deployment runtime, or its export computes something else."""


class RecipeError(ConfigError):
    """A recipe is invalid; ``problems`` lists every problem found, each with its place.

    Attributes:
        problems: one line per problem (``steps[2].prune_channels.spedup: ...``).
    """

    def __init__(self, problems: list[str], source: str = "recipe") -> None:
        lines = "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1))
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")
        self.problems = problems
