"""Pure tensor math behind the conversions: truncated SVD, Tucker-2 HOSVD, per-channel SVD
for depthwise-separable kernels, rank selection and BatchNorm folding.

Every function takes and returns tensors (no modules); decompositions run in float64 and come
back in the input's dtype. The ``sqrt(S)`` of each SVD is split evenly between the two
factors so neither factor's scale dwarfs the other.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "data_aware_svd",
    "depthwise_separable_factors",
    "fold_batchnorm",
    "input_factor",
    "mode_singular_values",
    "patch_factors",
    "rank_for_energy",
    "rank_for_ratio",
    "singular_values",
    "truncated_svd",
    "tucker2",
]


# From this size on, SVDs go through the smaller Gram matrix (a GEMM and a symmetric
# eigensolver): several times faster than LAPACK's gesdd for VGG's 4096 x 25088 classifier.
GRAM_FROM = 1024


def _top_left(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Leading ``rank`` left singular vectors ``(m, rank)`` and values of a float64 matrix."""
    m, n = matrix.shape
    if m < GRAM_FROM or m > n:
        u, s, _ = torch.linalg.svd(matrix, full_matrices=False)
        return u[:, :rank], s[:rank]
    w, u = torch.linalg.eigh(matrix @ matrix.T)
    return u.flip(1)[:, :rank], w.flip(0)[:rank].clamp_min(0).sqrt()


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """All singular values of a matrix, largest first, in float64."""
    a = matrix.double()
    if min(a.shape) < GRAM_FROM:
        return torch.linalg.svdvals(a)
    gram = a @ a.T if a.shape[0] <= a.shape[1] else a.T @ a
    return torch.linalg.eigvalsh(gram).flip(0).clamp_min(0).sqrt()


def truncated_svd(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-``rank`` factors ``left @ right`` of a matrix (Eckart-Young).

    ``left @ right`` is ``U_r U_r^T A``, the projection on the leading left singular vectors,
    so ``rank = min(m, n)`` is exact.

    Args:
        matrix: ``(m, n)``.
        rank: ``1 <= rank <= min(m, n)``.

    Returns:
        ``left`` of shape ``(m, rank)`` and ``right`` of shape ``(rank, n)``.

    Example:
        >>> a, b = truncated_svd(torch.randn(6, 4), 4)
        >>> a.shape, b.shape
        (torch.Size([6, 4]), torch.Size([4, 4]))
    """
    assert 1 <= rank <= min(matrix.shape), (rank, matrix.shape)
    if matrix.shape[0] > matrix.shape[1]:
        left, right = truncated_svd(matrix.T, rank)
        return right.T.contiguous(), left.T.contiguous()
    a = matrix.double()
    u, s = _top_left(a, rank)
    root = s.sqrt().clamp_min(1e-150)
    left = u * root
    right = (u.T @ a) / root[:, None]
    return left.to(matrix.dtype), right.to(matrix.dtype)


def input_factor(x: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """Cholesky factor ``L`` of the inputs' second moment: ``L L^T = X^T X / M + ridge``.

    Args:
        x: ``(M, n)`` input rows (tokens, pixels).
        ridge: added to the diagonal, relative to its mean, so ``L`` is invertible.

    Returns:
        ``(n, n)`` lower-triangular, float64.
    """
    x = x.detach().double()
    moment = x.T @ x / max(1, x.shape[0])
    moment.diagonal().add_(ridge * float(moment.diagonal().mean()) + 1e-12)
    return torch.linalg.cholesky(moment)


def data_aware_svd(
    weight: torch.Tensor, chol: torch.Tensor, rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-``rank`` factors minimizing the output error ``||(W - left @ right) X^T||_F``.

    With ``L L^T = X^T X``, ``||(W - W') X^T||_F = ||(W - W') L||_F``, so the optimum is the
    truncated SVD of ``W L``, mapped back by ``L^{-1}`` (as in activation-aware SVD). Exact at
    full rank; the error on ``X`` shrinks monotonically as ``rank`` grows.

    Args:
        weight: ``(out, in)``.
        chol: ``input_factor(X)``, ``(in, in)``.
        rank: ``1 <= rank <= min(out, in)``.

    Returns:
        ``left (out, rank)`` and ``right (rank, in)``.
    """
    left, right = truncated_svd(weight.double() @ chol, rank)
    right = torch.linalg.solve_triangular(chol, right, upper=False, left=False)
    return left.to(weight.dtype), right.to(weight.dtype)


def rank_for_energy(singular_values: torch.Tensor, energy: float) -> int:
    """Smallest rank whose singular values keep ``energy`` of the squared Frobenius norm.

    Example:
        >>> rank_for_energy(torch.tensor([3.0, 1.0, 0.0]), 0.9)
        1
    """
    sq = singular_values.double().square()
    total = float(sq.sum())
    if total == 0.0:
        return 1
    kept = torch.cumsum(sq, 0) / total
    return int(torch.searchsorted(kept, torch.tensor(energy - 1e-12, dtype=kept.dtype))) + 1


def rank_for_ratio(ratio: float, full: int) -> int:
    """``ceil(ratio * full)``, at least 1. ``rank_for_ratio(0.25, 384) == 96``."""
    return max(1, min(full, math.ceil(ratio * full - 1e-9)))


def mode_singular_values(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values of a conv kernel's output-mode and input-mode unfoldings.

    Args:
        weight: ``(Cout, Cin, kh, kw)``.

    Returns:
        ``(s_out, s_in)`` of lengths ``min(Cout, Cin*kh*kw)`` and ``min(Cin, Cout*kh*kw)``.
    """
    w = weight.double()
    s_out = singular_values(w.flatten(1))
    s_in = singular_values(w.transpose(0, 1).flatten(1))
    return s_out, s_in


def tucker2(
    weight: torch.Tensor, rank_in: int, rank_out: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tucker-2 decomposition of a conv kernel by truncated HOSVD.

    ``W ≈ core ×_out U_out ×_in U_in``, where ``U_out`` and ``U_in`` are the leading left
    singular vectors of the output- and input-mode unfoldings. The kernel-space error
    ``||W||² - ||core||²`` shrinks monotonically as either rank grows (nested projections)
    and is zero at ``rank_in = Cin``, ``rank_out = Cout``.

    Args:
        weight: ``(Cout, Cin, kh, kw)``.
        rank_in: ``1 <= rank_in <= Cin``.
        rank_out: ``1 <= rank_out <= Cout``.

    Returns:
        ``first (rank_in, Cin)`` (= ``U_in^T``), ``core (rank_out, rank_in, kh, kw)`` and
        ``last (Cout, rank_out)`` (= ``U_out``): the weights of the 1x1, k x k and 1x1 convs.

    Example:
        >>> w = torch.randn(8, 4, 3, 3)
        >>> first, core, last = tucker2(w, 4, 8)
        >>> torch.allclose(torch.einsum("or,rshw,si->oihw", last, core, first), w, atol=1e-5)
        True
    """
    cout, cin = weight.shape[:2]
    assert 1 <= rank_in <= cin and 1 <= rank_out <= cout, (rank_in, rank_out, weight.shape)
    w = weight.double()
    u_out = _top_left(w.flatten(1), rank_out)[0]
    u_in = _top_left(w.transpose(0, 1).flatten(1), rank_in)[0]
    core = torch.einsum("oihw,or,is->rshw", w, u_out, u_in)
    dtype = weight.dtype
    return u_in.T.contiguous().to(dtype), core.to(dtype), u_out.contiguous().to(dtype)


def depthwise_separable_factors(
    weight: torch.Tensor, rank: int, chol: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-input-channel SVD: ``W[o, i] ≈ sum_r P[o, i*rank + r] * D[i*rank + r]``.

    For each input channel ``i`` the ``Cout x (kh*kw)`` slice ``M_i = W[:, i]`` is factored
    by a truncated SVD; ``rank = min(kh*kw, Cout)`` is exact. With ``chol`` (per channel,
    ``L_i L_i^T`` = second moment of channel ``i``'s input patches) the SVD is of ``M_i L_i``,
    mapped back by ``L_i^{-1}``: each channel's contribution to the output is then the best
    rank-``rank`` one on those inputs.

    Args:
        weight: ``(Cout, Cin, kh, kw)`` of a conv with ``groups=1``.
        rank: depthwise filters per input channel.
        chol: optional ``(Cin, kh*kw, kh*kw)`` lower-triangular factors.

    Returns:
        ``depthwise (Cin*rank, 1, kh, kw)`` and ``pointwise (Cout, Cin*rank)``, ordered so
        that depthwise channel ``i*rank + r`` belongs to input channel ``i``.

    Example:
        >>> dw, pw = depthwise_separable_factors(torch.randn(16, 8, 3, 3), 2)
        >>> dw.shape, pw.shape
        (torch.Size([16, 1, 3, 3]), torch.Size([16, 16]))
    """
    cout, cin, kh, kw = weight.shape
    assert 1 <= rank <= min(kh * kw, cout), (rank, weight.shape)
    per_channel = weight.double().permute(1, 0, 2, 3).reshape(cin, cout, kh * kw)
    if chol is not None:
        per_channel = per_channel @ chol
    u, s, vh = torch.linalg.svd(per_channel, full_matrices=False)
    root = s[:, :rank].sqrt()  # (Cin, rank)
    point = u[:, :, :rank] * root[:, None, :]  # (Cin, Cout, rank)
    depth = vh[:, :rank, :] * root[:, :, None]  # (Cin, rank, kh*kw)
    if chol is not None:
        depth = torch.linalg.solve_triangular(chol, depth, upper=False, left=False)
    dw = depth.reshape(cin * rank, 1, kh, kw)
    pw = point.permute(1, 0, 2).reshape(cout, cin * rank)
    return dw.to(weight.dtype), pw.to(weight.dtype)


def patch_factors(patches: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """Per-channel Cholesky factors of the patches' second moments.

    Args:
        patches: ``(M, C, P)``: ``M`` positions, ``C`` channels, ``P`` taps each.
        ridge: added to each diagonal, relative to its mean.

    Returns:
        ``(C, P, P)`` lower-triangular, float64.
    """
    x = patches.detach().double()
    moment = torch.einsum("mcp,mcq->cpq", x, x) / max(1, x.shape[0])
    scale = moment.diagonal(dim1=1, dim2=2).mean(1, keepdim=True)
    moment.diagonal(dim1=1, dim2=2).add_(ridge * scale + 1e-12)
    return torch.linalg.cholesky(moment)


def fold_batchnorm(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    mean: torch.Tensor,
    var: torch.Tensor,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of ``bn(layer(x))`` as one layer, for an eval-mode BatchNorm.

    ``scale = gamma / sqrt(var + eps)``; ``W' = W * scale`` along dim 0 (output channels);
    ``b' = (b - mean) * scale + beta``.

    Args:
        weight: ``(Cout, ...)`` of a conv or linear layer.
        bias: ``(Cout,)`` or None.
        mean, var: the BatchNorm's running statistics, ``(Cout,)``.
        gamma, beta: its affine parameters, or None when ``affine=False``.
        eps: its epsilon.

    Returns:
        The folded ``(weight, bias)``.

    Example:
        >>> w, b = fold_batchnorm(torch.ones(2, 3), None, torch.zeros(2), torch.ones(2),
        ...                       None, None, 0.0)
        >>> b.tolist()
        [0.0, 0.0]
    """
    dtype = weight.dtype
    scale = torch.rsqrt(var.double() + eps)
    if gamma is not None:
        scale = scale * gamma.double()
    b = -mean.double() if bias is None else bias.double() - mean.double()
    b = b * scale + (beta.double() if beta is not None else 0.0)
    w = weight.double() * scale.view(-1, *([1] * (weight.dim() - 1)))
    return w.to(dtype), b.to(dtype)
