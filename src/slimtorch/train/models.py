"""Small CNNs for the offline data sets of ``slimtorch.train.data``, buildable from a spec
(``slimtorch.train.models:digits_cnn``) so that ``.slim`` files and the CLI can name them."""

from __future__ import annotations

from torch import nn

__all__ = ["digits_cnn", "mnist1d_cnn"]


def _block2d(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def digits_cnn(num_classes: int = 10, width: int = 32) -> nn.Module:
    """A CNN for 1x8x8 digit images: input ``(B, 1, 8, 8)``, logits ``(B, num_classes)``.

    Example:
        >>> digits_cnn()(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    return nn.Sequential(
        *_block2d(1, width),
        *_block2d(width, 2 * width),
        nn.MaxPool2d(2),
        *_block2d(2 * width, 2 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


def _block1d(cin: int, cout: int, k: int, stride: int) -> list[nn.Module]:
    conv = nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
    return [conv, nn.BatchNorm1d(cout), nn.ReLU()]


def mnist1d_cnn(num_classes: int = 10, width: int = 32) -> nn.Module:
    """A 1-D CNN for MNIST-1D signals: input ``(B, 1, 40)``, logits ``(B, num_classes)``.

    The head flattens the last feature map (10 positions) rather than pooling it: where a
    pattern sits in the signal matters for MNIST-1D.
    """
    return nn.Sequential(
        *_block1d(1, width, 5, 1),
        *_block1d(width, width, 5, 2),
        *_block1d(width, 2 * width, 3, 2),
        *_block1d(2 * width, 2 * width, 3, 1),
        nn.Flatten(),
        nn.Linear(2 * width * 10, num_classes),
    )
