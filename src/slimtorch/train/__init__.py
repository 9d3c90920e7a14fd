"""Fine-tuning with knowledge distillation, on one CPU or under torchrun.

``finetune`` trains a copy of a (pruned) student, with cross-entropy and/or distillation
from a teacher; checkpoints are pickle-free and a killed run resumes bit-identically.
``IterativePruning`` alternates channel pruning and fine-tuning.
"""

from .data import accuracy, digits, image_folder, mnist1d, sentences
from .iterative import IterativePruning, IterativeResult
from .loop import finetune
from .options import FinetuneOptions
from .result import FinetuneResult

__all__ = [
    "FinetuneOptions",
    "FinetuneResult",
    "IterativePruning",
    "IterativeResult",
    "accuracy",
    "digits",
    "finetune",
    "image_folder",
    "mnist1d",
    "sentences",
]
