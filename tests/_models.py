"""Small models built by a factory spec (``_models:NAME``), so ``.slim`` files can rebuild them."""

import torch
from torch import nn


def small_cnn(num_classes: int = 10) -> nn.Module:
    """Conv 5x5 + BN, conv 3x3 + BN, pooling, two Linear layers: every conversion applies."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 5, padding=2),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, so folding is tested
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def weight_norm_cnn() -> nn.Module:
    """Convs under both weight_norm APIs (parametrization and the older hook)."""
    from torch.nn.utils import weight_norm as hook_weight_norm
    from torch.nn.utils.parametrizations import weight_norm

    torch.manual_seed(0)
    return nn.Sequential(
        weight_norm(nn.Conv2d(3, 16, 3, padding=1)),
        nn.ReLU(),
        hook_weight_norm(nn.Conv2d(16, 16, 3, padding=1)),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()
