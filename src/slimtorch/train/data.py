"""Offline data sets to fine-tune on, and an accuracy helper.

* ``digits``: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), as
  ``(1, 8, 8)`` tensors in [0, 1]. Split by a fixed rule: every fifth image (index % 5 == 0)
  is the test set (360), the rest the training set (1,437).
* ``mnist1d``: MNIST-1D (Greydanus 2020) generated locally by the ``mnist1d`` package with its
  default arguments (seed 42; nothing is downloaded), ``(1, 40)`` signals; its own split of
  4,000 training and 1,000 test samples.
* ``sentences``: English sentences from the docstrings of a fixed list of standard-library
  modules, in a fixed order (they change only with the Python version), for distilling
  embedding models.
* ``image_folder``: ``torchvision.datasets.ImageFolder`` on a folder of ``CLASS/IMAGE`` files.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import random
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from ..errors import ConfigError, InputError
from .losses import main_output

__all__ = ["accuracy", "digits", "image_folder", "mnist1d", "sentences"]

SPLITS = ("train", "test")
_SENTENCE_MODULES = (
    "abc", "argparse", "asyncio", "base64", "bisect", "calendar", "collections", "contextlib",
    "csv", "dataclasses", "datetime", "decimal", "difflib", "email", "enum", "fractions",
    "functools", "gzip", "hashlib", "heapq", "http.client", "inspect", "io", "ipaddress",
    "itertools", "json", "logging", "os", "pathlib", "pprint", "queue", "random", "re",
    "shutil", "socket", "sqlite3", "statistics", "string", "subprocess", "tarfile",
    "tempfile", "textwrap", "threading", "typing", "unittest", "urllib.parse", "uuid",
    "warnings", "zipfile",
)  # fmt: skip
_SPLIT_SENTENCES = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_PROSE = re.compile(r"^[A-Z][A-Za-z0-9 ,;:'()\-]+[.!?]$")


def _split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"split={split!r} is unknown; use 'train' or 'test'.")
    return split


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ConfigError("digits() needs scikit-learn: pip install 'slimtorch[demo]'.") from exc
    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32) / 16.0, y.astype(np.int64)


def digits(split: str = "train") -> TensorDataset:
    """scikit-learn's digits as ``(x, y)`` samples: ``x`` of shape ``(1, 8, 8)``, ``y`` in 0..9.

    Example:
        >>> len(digits("train")), len(digits("test"))
        (1437, 360)
    """
    x, y = _digits_arrays()
    test = np.arange(len(y)) % 5 == 0
    keep = test if _split(split) == "test" else ~test
    return TensorDataset(torch.from_numpy(x[keep]).reshape(-1, 1, 8, 8), torch.from_numpy(y[keep]))


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> dict[str, np.ndarray]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise ConfigError("mnist1d() needs the mnist1d package: pip install mnist1d.") from exc
    py_state, np_state = random.getstate(), np.random.get_state()
    try:  # make_dataset seeds the global generators; leave the caller's alone
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


def mnist1d(split: str = "train") -> TensorDataset:
    """MNIST-1D as ``(x, y)`` samples: ``x`` of shape ``(1, 40)``, ``y`` in 0..9 (4,000 train,
    1,000 test), generated locally with the package's default arguments."""
    d = _mnist1d_arrays()
    x, y = (d["x"], d["y"]) if _split(split) == "train" else (d["x_test"], d["y_test"])
    xs = torch.from_numpy(x.astype(np.float32)).unsqueeze(1)
    return TensorDataset(xs, torch.from_numpy(y.astype(np.int64)))


# Standard-library modules left out of ``modules="stdlib"``: importing them opens a browser,
# prints, starts a GUI, or exists only on another platform.
_NOT_PROSE = frozenset({
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3",
    "ensurepip", "pydoc_data", "venv", "msilib", "winreg", "winsound", "nt", "msvcrt",
})  # fmt: skip


def _docstrings(module_name: str, methods: bool = False) -> list[str]:
    try:
        with warnings.catch_warnings():  # asynchat, cgi, ... warn that they are deprecated
            warnings.simplefilter("ignore")
            module = importlib.import_module(module_name)
    except Exception:  # a module that does not import here (a platform's, a missing C lib)
        return []
    docs = [inspect.getdoc(module) or ""]
    for name, member in sorted(vars(module).items()):
        if name.startswith("_") or getattr(member, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(member) or inspect.isfunction(member):
            with warnings.catch_warnings():  # typing.io and typing.re warn when read
                warnings.simplefilter("ignore", DeprecationWarning)
                docs.append(inspect.getdoc(member) or "")
        if methods and inspect.isclass(member):
            docs += [
                inspect.cleandoc(f.__doc__ or "")
                for key, f in sorted(vars(member).items())
                if not key.startswith("_") and inspect.isfunction(f)
            ]
    return docs


def sentences(
    limit: int | None = None, min_words: int = 6, max_words: int = 40, modules: str = "common"
) -> list[str]:
    """English sentences from standard-library docstrings, deduplicated, in a fixed order.

    Only prose is kept: a capital first letter, a final ``.``, ``!`` or ``?``, letters,
    digits and light punctuation in between, ``min_words`` to ``max_words`` words.
    ``modules="common"`` reads 49 common modules (945 sentences on Python 3.11);
    ``"stdlib"`` every standard-library module that imports, methods' docstrings too
    (about 3,100), for distillation that needs more text.

    Example:
        >>> s = sentences(limit=3)
        >>> len(s), s[0][0].isupper()
        (3, True)
    """
    if modules not in ("common", "stdlib"):
        raise ConfigError(f"modules={modules!r}: use 'common' or 'stdlib'")
    names: tuple[str, ...] = _SENTENCE_MODULES
    if modules == "stdlib":
        names = tuple(
            sorted(
                m for m in sys.stdlib_module_names if not m.startswith("_") and m not in _NOT_PROSE
            )
        )
    seen: dict[str, None] = {}
    for module_name in names:
        for doc in _docstrings(module_name, methods=modules == "stdlib"):
            for paragraph in doc.split("\n\n"):
                text = " ".join(paragraph.split())
                for s in _SPLIT_SENTENCES.split(text):
                    if _PROSE.match(s) and min_words <= len(s.split()) <= max_words:
                        seen.setdefault(s, None)
                        if limit is not None and len(seen) >= limit:
                            return list(seen)
    return list(seen)


def image_folder(path: str | os.PathLike, image_size: int = 32) -> Dataset:
    """Images under ``path/CLASS/*.png|jpg`` as ``(x, y)``: ``x`` of shape
    ``(3, image_size, image_size)`` in [0, 1], ``y`` the index of ``CLASS`` (sorted names)."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"--data {str(root)!r} is not a folder of CLASS/IMAGE files.")
    try:
        from torchvision import datasets, transforms
    except ImportError as exc:
        raise ConfigError("image_folder() needs torchvision: pip install torchvision.") from exc
    tf = transforms.Compose(
        [
            transforms.Resize(image_size),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
        ]
    )
    try:
        return datasets.ImageFolder(str(root), transform=tf, loader=_rgb)
    except (FileNotFoundError, RuntimeError) as exc:
        raise InputError(
            f"{str(root)!r} holds no images in class folders ({exc}); lay it out as "
            "ROOT/CLASS_NAME/IMAGE.png, one folder per class."
        ) from exc


def _rgb(path: str) -> Any:
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def accuracy(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> float:
    """The fraction of ``dataset``'s ``(x, y)`` samples whose argmax logit is ``y``."""
    from torch.utils.data import DataLoader

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    correct = total = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x, y in DataLoader(dataset, batch_size=batch_size):
                pred = main_output(model(x.to(device))).argmax(-1).cpu()
                correct += int((pred == y).sum())
                total += len(y)
    finally:
        model.train(was_training)
    return correct / max(total, 1)


BUILTIN = {"digits": digits, "mnist1d": mnist1d}


def builtin_data(name: str, image_size: int = 32) -> tuple[Dataset, Dataset | None]:
    """``(train, test)`` of a built-in data set (``digits``, ``mnist1d``), or ``(folder,
    None)`` for a folder of ``CLASS/IMAGE`` files resized to ``image_size``."""
    if name in BUILTIN:
        return BUILTIN[name]("train"), BUILTIN[name]("test")
    if not os.path.isdir(name):
        raise ConfigError(
            f"data {name!r} is neither a built-in data set ({', '.join(BUILTIN)}) nor a "
            "folder of CLASS/IMAGE files."
        )
    return image_folder(name, image_size), None
