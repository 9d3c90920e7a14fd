"""Index spaces of tensor dimensions, and how ops couple them.

Every dimension of every traced tensor has a *layout*: a list of segments laid end to end,
each segment a row-major product of *atoms*. An atom is an index space of a fixed size; atoms
joined by ``union`` are the same space (pruning index ``i`` of one prunes it in all). Ops refine
atoms: a concatenation splits an atom into consecutive parts (``cat``), a reshape factors it
(``prod``, e.g. ``hidden = heads x head_dim``). What cannot be expressed this way is *frozen*,
with a reason, so that it is never pruned.

Example: ``torch.cat([a, b], 1)`` gives the output's channel dimension the layout
``[(A,), (B,)]``; a later ``flatten`` of ``(C, H, W)`` gives ``[(C, H, W)]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Atoms", "Layout", "Segment"]

Segment = tuple[int, ...]  # atom ids, a row-major product
Layout = list[Segment]


@dataclass
class Atoms:
    """A union-find over index spaces, with refinements, flags and frozen reasons."""

    size: list[int] = field(default_factory=list)
    parent: list[int] = field(default_factory=list)
    refine: dict[int, tuple[str, list[int]]] = field(default_factory=dict)
    flags: dict[int, set[str]] = field(default_factory=dict)
    frozen: dict[int, str] = field(default_factory=dict)
    version: int = 0  # bumped whenever expansions may change (refinements)

    def new(self, size: int, flags: set[str] | None = None) -> int:
        aid = len(self.size)
        self.size.append(int(size))
        self.parent.append(aid)
        if flags:
            self.flags[aid] = set(flags)
        return aid

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    # -- flags and freezing ------------------------------------------------------------
    def flag(self, a: int, name: str) -> None:
        r = self.find(a)
        self.flags.setdefault(r, set()).add(name)
        if r in self.refine:
            for c in self.refine[r][1]:
                self.flag(c, name)

    def has(self, a: int, name: str) -> bool:
        return name in self.flags.get(self.find(a), ())

    def freeze(self, a: int, reason: str) -> None:
        r = self.find(a)
        self.frozen.setdefault(r, reason)
        if r in self.refine:
            for c in self.refine[r][1]:
                self.freeze(c, reason)

    def freeze_layout(self, layout: Layout, reason: str) -> None:
        for seg in layout:
            for a in seg:
                self.freeze(a, reason)

    # -- refinement ----------------------------------------------------------------------
    def _refine(self, a: int, kind: str, children: list[int]) -> None:
        r = self.find(a)
        assert r not in self.refine
        self.version += 1
        self.refine[r] = (kind, children)
        for name in self.flags.get(r, ()):
            for c in children:
                self.flag(c, name)
        if r in self.frozen:
            for c in children:
                self.freeze(c, self.frozen[r])

    def split(self, a: int, at: int) -> tuple[int, int]:
        """Refines atom ``a`` into two consecutive parts of sizes ``at`` and ``size - at``."""
        r = self.find(a)
        first, second = self.new(at), self.new(self.size[r] - at)
        self._refine(r, "cat", [first, second])
        return first, second

    def factor(self, a: int, sizes: list[int]) -> list[int]:
        """Refines atom ``a`` into a row-major product of new atoms of the given sizes."""
        r = self.find(a)
        children = [self.new(s) for s in sizes]
        self._refine(r, "prod", children)
        return children

    # -- layouts -------------------------------------------------------------------------
    def seg_size(self, seg: Segment) -> int:
        if len(seg) == 1:  # the common case: one atom (sizes of joined atoms agree)
            return self.size[seg[0]]
        return math.prod(self.size[a] for a in seg)

    def expand(self, layout: Layout) -> Layout:
        """Resolves refinements: products flatten in place, a split first factor splits
        the segment. Size-1 factors are dropped from products of larger ones."""
        if len(layout) == 1 and len(layout[0]) == 1:  # the common case: one plain atom
            r = self.find(layout[0][0])
            if r not in self.refine:
                return [(r,)]
        out: Layout = []
        stack = list(reversed(layout))
        while stack:
            seg = tuple(self.find(a) for a in stack.pop())
            flat: list[int] = []
            for a in seg:
                flat.extend(self._flatten_prod(a))
            flat = [a for a in flat if self.size[a] != 1] or flat[:1]
            if not flat:  # an empty product: one position
                out.append(())
                continue
            head = flat[0]
            if head in self.refine and self.refine[head][0] == "cat":
                parts = self.refine[head][1]
                stack.extend(reversed([(p, *flat[1:]) for p in parts]))
                continue
            out.append(tuple(flat))
        return out

    def _flatten_prod(self, a: int) -> list[int]:
        r = self.find(a)
        if r in self.refine and self.refine[r][0] == "prod":
            return [x for c in self.refine[r][1] for x in self._flatten_prod(c)]
        return [r]

    # -- unification ---------------------------------------------------------------------
    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        if self.size[ra] != self.size[rb]:
            return False
        if ra in self.refine or rb in self.refine:
            self.version += 1
        if ra in self.refine and rb in self.refine:
            self.parent[rb] = ra
            fa, fb = self.refine[ra], self.refine.pop(rb)
            ok = self.unify(
                [(c,) for c in fa[1]] if fa[0] == "cat" else [tuple(fa[1])],
                [(c,) for c in fb[1]] if fb[0] == "cat" else [tuple(fb[1])],
            )
        else:
            if rb in self.refine:
                ra, rb = rb, ra
            self.parent[rb] = ra  # ra keeps any refinement
            ok = True
        moved = self.flags.pop(rb, None)
        if moved:
            self.flags.setdefault(ra, set()).update(moved)
        if rb in self.frozen:
            self.freeze(ra, self.frozen.pop(rb))
        elif ra in self.frozen:
            self.freeze(ra, self.frozen[ra])
        if ra in self.refine:  # flags reach the parts of a refined atom
            for name in list(self.flags.get(ra, ())):
                self.flag(ra, name)
        return ok

    def layout_size(self, layout: Layout) -> int:
        """Total number of indices of a layout."""
        return sum(self.seg_size(seg) for seg in self.expand(layout))

    def unify(self, left: Layout, right: Layout) -> bool:
        """Makes two layouts of the same total size the same index space.

        Returns False (after freezing both) when the structures cannot be reconciled, and
        for layouts of different total size, which no rule should ask for.
        """
        if len(left) == 1 == len(right) and len(left[0]) == 1 == len(right[0]):
            a, b = self.find(left[0][0]), self.find(right[0][0])
            if a not in self.refine and b not in self.refine and self.size[a] == self.size[b]:
                return self.union(a, b)  # the common case: one atom each
        if self.layout_size(left) != self.layout_size(right):
            self._give_up(left, right)
            return False
        done = 0  # size of the prefix already unified; segment boundaries align there
        for _ in range(100_000):
            version = self.version
            e1, e2 = self._drop(self.expand(left), done), self._drop(self.expand(right), done)
            if e1 is None or e2 is None:
                self._give_up(left, right)
                return False
            for one, many in ((e1, e2), (e2, e1)):
                if len(one) == 1 == len(one[0]) and len(many) > 1 and one[0][0] not in self.refine:
                    # One atom against many segments: split it once, not segment by segment.
                    self._refine(one[0][0], "cat", [self.new(self.seg_size(g)) for g in many])
                    break
            if self.version != version:
                continue
            k = 0
            while self.version == version:  # expansions stay valid until a refinement
                if k >= len(e1) or k >= len(e2):
                    if k < len(e1) or k < len(e2):
                        self._give_up(left, right)
                        return False
                    return True
                s1, s2 = e1[k], e2[k]
                n1, n2 = self.seg_size(s1), self.seg_size(s2)
                if n1 == n2:
                    if not self._unify_segments(s1, s2):
                        self._give_up(left, right)
                        return False
                    done += n1
                    k += 1
                    continue
                big, small = (s1, n2) if n1 > n2 else (s2, n1)
                stride = self.seg_size(big[1:])
                if small % stride or self.find(big[0]) in self.refine:
                    self._give_up(left, right)
                    return False
                self.split(big[0], small // stride)
        raise AssertionError("layout unification did not converge")

    def _drop(self, layout: Layout, n: int) -> Layout | None:
        """The layout without its first ``n`` positions (None if that cuts a segment)."""
        while n > 0 and layout:
            size = self.seg_size(layout[0])
            if size > n:
                return None
            n -= size
            layout = layout[1:]
        return layout if n == 0 else None

    def _unify_segments(self, s1: Segment, s2: Segment) -> bool:
        f1, f2 = list(s1), list(s2)
        while f1 and f2:
            a, b = self.find(f1[0]), self.find(f2[0])
            na, nb = self.size[a], self.size[b]
            if na == nb:
                if not self.union(a, b):
                    return False
                f1.pop(0)
                f2.pop(0)
                continue
            if len(f1) == 1 and a not in self.refine:
                self._refine(a, "prod", [self.find(x) for x in f2])
                return True
            if len(f2) == 1 and b not in self.refine:
                self._refine(b, "prod", [self.find(x) for x in f1])
                return True
            big, small, lst = (a, nb, f1) if na > nb else (b, na, f2)
            if self.size[big] % small or big in self.refine:
                return False
            head, _rest = self.factor(big, [small, self.size[big] // small])
            lst[0:1] = [head, _rest]
        return not f1 and not f2

    def _give_up(self, left: Layout, right: Layout) -> None:
        reason = "dimension structures could not be matched"
        self.freeze_layout(self.expand(left), reason)
        self.freeze_layout(self.expand(right), reason)
