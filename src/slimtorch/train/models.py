"""Small CNNs for the offline data sets of ``slimtorch.train.data``, buildable from a spec
(``slimtorch.train.models:digits_cnn``) so that ``.slim`` files and the CLI can name them."""

from __future__ import annotations

from torch import nn

__all__ = ["digits_cnn", "digits_resnet", "digits_vit", "mnist1d_cnn", "mnist1d_resnet"]


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


class Residual(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input, then ReLU: a ResNet basic block (same shape)."""

    def __init__(self, channels: int, dims: int = 2, kernel: int = 3) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        pad = kernel // 2
        self.conv1 = conv(channels, channels, kernel, padding=pad, bias=False)
        self.bn1 = norm(channels)
        self.conv2 = conv(channels, channels, kernel, padding=pad, bias=False)
        self.bn2 = norm(channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(x + self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


def _stage(cin: int, cout: int, blocks: int, dims: int, stride: int) -> nn.Sequential:
    conv = nn.Conv2d if dims == 2 else nn.Conv1d
    norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    k = 3
    entry = [conv(cin, cout, k, stride=stride, padding=k // 2, bias=False), norm(cout), nn.ReLU()]
    return nn.Sequential(*entry, *(Residual(cout, dims) for _ in range(blocks)))


def digits_resnet(num_classes: int = 10, width: int = 32, blocks: int = 3) -> nn.Module:
    """A residual CNN for 1x8x8 digits: two stages (8x8 at ``width``, 4x4 at ``2 * width``)
    of ``blocks`` residual blocks each, after a strided entry conv.

    Example:
        >>> digits_resnet()(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    return nn.Sequential(
        _stage(1, width, blocks, 2, 1),
        _stage(width, 2 * width, blocks, 2, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


def mnist1d_resnet(num_classes: int = 10, width: int = 32, blocks: int = 3) -> nn.Module:
    """A residual 1-D CNN for MNIST-1D: three stages (40, 20 and 10 positions, ``width``,
    ``width``, ``2 * width`` channels) of ``blocks`` residual blocks each; the head
    flattens the last map, as ``mnist1d_cnn`` does."""
    return nn.Sequential(
        _stage(1, width, blocks, 1, 1),
        _stage(width, width, blocks, 1, 2),
        _stage(width, 2 * width, blocks, 1, 2),
        nn.Flatten(),
        nn.Linear(2 * width * 10, num_classes),
    )


def digits_vit(num_classes: int = 10, layers: int = 6, dim: int = 64, heads: int = 4) -> nn.Module:
    """A small torchvision ViT for 1x8x8 digits (2x2 patches, 16 tokens + class token):
    input ``(B, 1, 8, 8)``, logits ``(B, num_classes)``. Its encoder layers are what depth
    pruning removes in the shipped transformer recipe."""
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(
        image_size=8, patch_size=2, num_layers=layers, num_heads=heads, hidden_dim=dim,
        mlp_dim=2 * dim, num_classes=num_classes,
    )  # fmt: skip
    model.conv_proj = nn.Conv2d(1, dim, kernel_size=2, stride=2)  # one input channel
    return model
