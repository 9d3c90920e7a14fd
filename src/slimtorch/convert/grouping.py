"""Which channels go to which group when a dense conv becomes a grouped one (pure math).

Given the weight energy ``E[o, i] = ||W[o, i]||²`` between output channel ``o`` and input
channel ``i``, pick a balanced assignment of outputs (``Cout/g`` per group) and inputs
(``Cin/g`` per group) to ``g`` groups that keeps as much energy as possible inside the
diagonal blocks (everything else is dropped by the grouped conv). The problem is a balanced
bi-clustering (NP-hard in general); we solve it in three greedy steps:

1. **Merge** (Kruskal-like): visit channel pairs by decreasing energy and join the clusters of
   ``o`` and ``i`` unless the joined cluster would exceed one group's capacity.
2. **Pack** the clusters into ``g`` groups, largest first, each into the group it fills best;
   a cluster that fits nowhere is split and its channels go one by one to the group with room
   they share most energy with.
3. **Swap**: alternately for outputs and inputs, exchange pairs of channels between groups
   while that raises the kept energy (with one side fixed, disjoint swaps' gains add up, so
   each round applies all non-conflicting improving swaps).

The result is never worse than contiguous groups (both are scored, the better is returned).
When ``W`` is block-diagonal up to a permutation with dense blocks, step 1 recovers exactly
the blocks and the kept energy is 100%.
"""

from __future__ import annotations

import torch

__all__ = ["GroupAssignment", "assign_groups", "kept_energy"]


class GroupAssignment:
    """Group of every output and input channel, and the permutations they imply.

    Attributes:
        out_groups: ``(Cout,)`` group index of each output channel.
        in_groups: ``(Cin,)`` group index of each input channel.
        kept: fraction of the weight energy inside the diagonal blocks.
    """

    def __init__(self, out_groups: torch.Tensor, in_groups: torch.Tensor, kept: float) -> None:
        self.out_groups, self.in_groups, self.kept = out_groups, in_groups, kept

    @property
    def in_perm(self) -> list[int]:
        """Input channels in group order: the conv reads ``x[:, in_perm]``."""
        return torch.argsort(self.in_groups, stable=True).tolist()

    @property
    def out_order(self) -> list[int]:
        """Original output channel of each grouped-conv output channel."""
        return torch.argsort(self.out_groups, stable=True).tolist()

    @property
    def out_perm(self) -> list[int]:
        """Position in the grouped conv's output of each original output channel."""
        return torch.argsort(torch.tensor(self.out_order)).tolist()


def kept_energy(energy: torch.Tensor, out_groups: torch.Tensor, in_groups: torch.Tensor) -> float:
    """Fraction of ``energy (Cout, Cin)`` whose output and input share a group."""
    total = float(energy.sum())
    if total == 0.0:
        return 1.0
    same = out_groups[:, None] == in_groups[None, :]
    return float(energy[same].sum()) / total


class _Clusters:
    """Union-find over outputs ``0..Cout-1`` and inputs ``Cout..Cout+Cin-1``."""

    def __init__(self, cout: int, cin: int) -> None:
        self.parent = list(range(cout + cin))
        self.size = [(1, 0)] * cout + [(0, 1)] * cin

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a


def _merge(energy: torch.Tensor, cap_out: int, cap_in: int) -> _Clusters:
    cout, cin = energy.shape
    clusters = _Clusters(cout, cin)
    order = torch.argsort(energy.flatten(), descending=True)
    order = order[energy.flatten()[order] > 0].tolist()
    merges, most = 0, cout + cin - 1
    for flat in order:
        a, b = clusters.find(flat // cin), clusters.find(cout + flat % cin)
        if a == b:
            continue
        (ao, ai), (bo, bi) = clusters.size[a], clusters.size[b]
        if ao + bo > cap_out or ai + bi > cap_in:
            continue
        clusters.parent[b] = a
        clusters.size[a] = (ao + bo, ai + bi)
        merges += 1
        if merges == most:
            break
    return clusters


def _pack(
    energy: torch.Tensor, clusters: _Clusters, groups: int, cap_out: int, cap_in: int
) -> tuple[torch.Tensor, torch.Tensor]:
    cout, cin = energy.shape
    members: dict[int, list[int]] = {}
    for node in range(cout + cin):
        members.setdefault(clusters.find(node), []).append(node)
    room = [[cap_out, cap_in] for _ in range(groups)]
    group_of = [-1] * (cout + cin)
    loose: list[int] = []

    def weight(nodes: list[int]) -> float:
        n_out = sum(1 for n in nodes if n < cout)
        return n_out / cap_out + (len(nodes) - n_out) / cap_in

    for nodes in sorted(members.values(), key=weight, reverse=True):
        n_out = sum(1 for n in nodes if n < cout)
        n_in = len(nodes) - n_out
        fits = [j for j in range(groups) if room[j][0] >= n_out and room[j][1] >= n_in]
        if not fits:
            loose.extend(nodes)
            continue
        j = min(fits, key=lambda j: (room[j][0] - n_out) / cap_out + (room[j][1] - n_in) / cap_in)
        room[j][0] -= n_out
        room[j][1] -= n_in
        for n in nodes:
            group_of[n] = j
    # Loose channels go, strongest first, to the group with room they share most energy with.
    strength = torch.cat([energy.sum(1), energy.sum(0)])
    for n in sorted(loose, key=lambda n: -float(strength[n])):
        side = 0 if n < cout else 1
        ids = torch.tensor(group_of)
        if side == 0:
            partners, other = energy[n], ids[cout:]
        else:
            partners, other = energy[:, n - cout], ids[:cout]
        affinity = torch.zeros(groups, dtype=energy.dtype)
        known = other >= 0
        affinity.index_add_(0, other[known], partners[known])
        open_ = [j for j in range(groups) if room[j][side] > 0]
        j = max(open_, key=lambda j: float(affinity[j]))
        room[j][side] -= 1
        group_of[n] = j
    ids = torch.tensor(group_of)
    return ids[:cout], ids[cout:]


def _swap_round(score: torch.Tensor, groups_of: torch.Tensor, tol: float) -> bool:
    """One round of disjoint improving swaps for one side; ``score[c, j]`` is channel ``c``'s
    energy with group ``j`` of the other side. Returns whether anything changed."""
    cur = score.gather(1, groups_of[:, None]).squeeze(1)
    cross = score[:, groups_of]  # cross[c, d] = score of c placed in d's group
    gain = cross + cross.T - cur[:, None] - cur[None, :]
    gain = torch.triu(gain, diagonal=1)
    flat = torch.nonzero(gain.flatten() > tol).squeeze(1)
    if flat.numel() == 0:
        return False
    flat = flat[torch.argsort(gain.flatten()[flat], descending=True)]
    n = gain.shape[0]
    used = torch.zeros(n, dtype=torch.bool)
    new = groups_of.clone()
    for f in flat.tolist():
        a, b = divmod(f, n)
        if used[a] or used[b]:
            continue
        used[a] = used[b] = True
        new[a], new[b] = groups_of[b], groups_of[a]
    groups_of.copy_(new)
    return True


def _refine(
    energy: torch.Tensor, out_g: torch.Tensor, in_g: torch.Tensor, groups: int, rounds: int
) -> None:
    tol = 1e-12 * float(energy.sum())
    onehot = torch.eye(groups, dtype=energy.dtype)
    for _ in range(rounds):
        changed = _swap_round(energy @ onehot[in_g], out_g, tol)
        changed |= _swap_round(energy.T @ onehot[out_g], in_g, tol)
        if not changed:
            return


def assign_groups(energy: torch.Tensor, groups: int, *, rounds: int = 20) -> GroupAssignment:
    """Balanced assignment of channels to ``groups`` keeping the most energy on the diagonal.

    Args:
        energy: ``(Cout, Cin)`` non-negative, e.g. ``weight.square().sum((2, 3))``.
        groups: divides both ``Cout`` and ``Cin``.
        rounds: at most this many rounds of improving swaps.

    Returns:
        A ``GroupAssignment``.

    Example:
        >>> e = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # block-diagonal after swapping inputs
        >>> a = assign_groups(e, 2)
        >>> a.kept, a.in_perm
        (1.0, [1, 0])
    """
    cout, cin = energy.shape
    assert cout % groups == 0 and cin % groups == 0, (energy.shape, groups)
    e = energy.detach().double().clamp_min(0)
    cap_out, cap_in = cout // groups, cin // groups
    out_g, in_g = _pack(e, _merge(e, cap_out, cap_in), groups, cap_out, cap_in)
    _refine(e, out_g, in_g, groups, rounds)
    plain_out = torch.arange(cout) // cap_out
    plain_in = torch.arange(cin) // cap_in
    ours, plain = kept_energy(e, out_g, in_g), kept_energy(e, plain_out, plain_in)
    if plain >= ours:
        return GroupAssignment(plain_out, plain_in, plain)
    return GroupAssignment(out_g, in_g, ours)
