"""Direct tests of the dimension algebra: atoms, union-find, refinement, layouts."""

import pytest

from slimtorch.graph.dims import Atoms

MISMATCH = "dimension structures could not be matched"


def roots(atoms, layout):
    """A layout after expansion, as roots with their sizes: [((root, size), ...), ...]."""
    return [tuple((atoms.find(a), atoms.size[atoms.find(a)]) for a in seg) for seg in layout]


def sizes(atoms, layout):
    return [tuple(atoms.size[atoms.find(a)] for a in seg) for seg in atoms.expand(layout)]


def assert_refinements_sum(atoms):
    """Invariant: a cat's parts add up to the atom, a product's factors multiply to it."""
    for parent, (kind, children) in atoms.refine.items():
        got = [atoms.size[atoms.find(c)] for c in children]
        total = sum(got) if kind == "cat" else _prod(got)
        assert total == atoms.size[parent], (parent, kind, got)


def _prod(xs):
    out = 1
    for x in xs:
        out *= x
    return out


# -- atoms and union-find ----------------------------------------------------------------------
def test_new_atoms_are_numbered_sized_and_their_own_roots():
    atoms = Atoms()
    a, b, c = atoms.new(4), atoms.new(7), atoms.new(1)
    assert (a, b, c) == (0, 1, 2)
    assert atoms.size == [4, 7, 1]
    assert [atoms.find(x) for x in (a, b, c)] == [0, 1, 2]
    assert atoms.flags == {} and atoms.frozen == {} and atoms.refine == {}
    assert atoms.version == 0


def test_new_atom_with_flags_copies_the_set():
    atoms = Atoms()
    given = {"produce"}
    a = atoms.new(3, flags=given)
    given.add("cross")
    assert atoms.has(a, "produce")
    assert not atoms.has(a, "cross")


def test_union_of_equal_sizes_shares_one_root_transitively():
    atoms = Atoms()
    a, b, c, d = (atoms.new(4) for _ in range(4))
    assert atoms.union(a, b) is True
    assert atoms.union(c, b) is True
    assert atoms.find(a) == atoms.find(b) == atoms.find(c)
    assert atoms.find(d) == d
    assert atoms.union(a, c) is True  # already one space
    assert atoms.version == 0  # unrefined atoms: expansions unchanged


def test_find_compresses_paths():
    atoms = Atoms()
    a, _, c = atoms.new(2), atoms.new(2), atoms.new(2)
    atoms.parent[:] = [0, 0, 1]  # c -> b -> a
    assert atoms.find(c) == a
    assert atoms.parent == [0, 0, 0]


def test_union_of_different_sizes_refuses_and_changes_nothing():
    atoms = Atoms()
    a, b = atoms.new(4), atoms.new(5)
    assert atoms.union(a, b) is False
    assert atoms.find(a) == a and atoms.find(b) == b
    assert atoms.frozen == {} and atoms.refine == {}


# -- unification of layouts --------------------------------------------------------------------
def test_unify_one_atom_each_is_a_union():
    atoms = Atoms()
    a, b = atoms.new(6), atoms.new(6)
    assert atoms.unify([(a,)], [(b,)]) is True
    assert atoms.find(a) == atoms.find(b)
    assert atoms.refine == {}


def test_unify_equal_layouts_pairs_segments_in_order():
    atoms = Atoms()
    a, b, c, d = atoms.new(2), atoms.new(3), atoms.new(2), atoms.new(3)
    assert atoms.unify([(a,), (b,)], [(c,), (d,)]) is True
    assert atoms.find(a) == atoms.find(c)
    assert atoms.find(b) == atoms.find(d)
    assert atoms.find(a) != atoms.find(b)


def test_unify_products_pairs_factors_in_order():
    atoms = Atoms()
    h1, d1, h2, d2 = atoms.new(3), atoms.new(4), atoms.new(3), atoms.new(4)
    assert atoms.unify([(h1, d1)], [(h2, d2)]) is True
    assert atoms.find(h1) == atoms.find(h2) and atoms.find(d1) == atoms.find(d2)


def test_unify_atom_with_parts_splits_it_like_cat():
    # torch.cat([a, b], 1): the output's channel atom becomes the parts, in order.
    atoms = Atoms()
    out, a, b = atoms.new(10), atoms.new(4), atoms.new(6)
    assert atoms.unify([(out,)], [(a,), (b,)]) is True
    kind, children = atoms.refine[atoms.find(out)]
    assert kind == "cat"
    assert [atoms.size[c] for c in children] == [4, 6]
    assert roots(atoms, atoms.expand([(out,)])) == [
        ((atoms.find(a), 4),),
        ((atoms.find(b), 6),),
    ]
    assert atoms.version > 0
    assert_refinements_sum(atoms)


def test_unify_atom_with_product_factors_it_like_a_reshape_into_heads():
    # view(B, T, 12) -> (B, T, 3, 4): hidden = heads x head_dim.
    atoms = Atoms()
    hidden, heads, head_dim = atoms.new(12), atoms.new(3), atoms.new(4)
    assert atoms.unify([(hidden,)], [(heads, head_dim)]) is True
    kind, children = atoms.refine[atoms.find(hidden)]
    assert kind == "prod"
    assert [atoms.find(c) for c in children] == [atoms.find(heads), atoms.find(head_dim)]
    assert roots(atoms, atoms.expand([(hidden,)])) == [
        ((atoms.find(heads), 3), (atoms.find(head_dim), 4))
    ]


def test_unify_coarse_product_with_finer_one_factors_the_coarse_factor():
    # (6, 4) against (3, 2, 4): the 6 becomes 3 x 2, the 4s are one space.
    atoms = Atoms()
    six, four = atoms.new(6), atoms.new(4)
    p, q, r = atoms.new(3), atoms.new(2), atoms.new(4)
    assert atoms.unify([(six, four)], [(p, q, r)]) is True
    assert atoms.find(four) == atoms.find(r)
    assert sizes(atoms, [(six,)]) == [(3, 2)]
    assert [atoms.find(a) for a in atoms.expand([(six,)])[0]] == [atoms.find(p), atoms.find(q)]
    assert_refinements_sum(atoms)


def test_unify_cat_layouts_meet_at_their_common_refinement():
    # 10 = 4 + 6 against 10 = 5 + 5: both become 4 + 1 + 5, the same three atoms.
    atoms = Atoms()
    a, b, c, d = atoms.new(4), atoms.new(6), atoms.new(5), atoms.new(5)
    assert atoms.unify([(a,), (b,)], [(c,), (d,)]) is True
    left, right = atoms.expand([(a,), (b,)]), atoms.expand([(c,), (d,)])
    assert sizes(atoms, [(a,), (b,)]) == [(4,), (1,), (5,)]
    assert roots(atoms, left) == roots(atoms, right)
    assert atoms.find(a) == atoms.find(left[0][0])
    assert atoms.find(d) == atoms.find(left[2][0])
    assert_refinements_sum(atoms)


def test_union_of_two_split_atoms_unifies_their_parts():
    atoms = Atoms()
    x, y = atoms.new(10), atoms.new(10)
    atoms.split(x, 4)
    atoms.split(y, 5)
    assert atoms.union(x, y) is True
    assert atoms.find(x) == atoms.find(y)
    assert sizes(atoms, [(x,)]) == [(4,), (1,), (5,)]
    assert roots(atoms, atoms.expand([(x,)])) == roots(atoms, atoms.expand([(y,)]))


def test_union_keeps_the_refinement_of_whichever_side_has_one():
    atoms = Atoms()
    plain, split = atoms.new(6), atoms.new(6)
    first, second = atoms.split(split, 2)
    assert atoms.union(plain, split) is True
    assert atoms.find(plain) == atoms.find(split)
    assert [atoms.find(a) for (a,) in atoms.expand([(plain,)])] == [first, second]


def test_halves_of_a_two_by_n_product_are_one_space():
    # A dim split 6 | 6 and also viewed as 2 x 6: each half is the 6 factor itself.
    atoms = Atoms()
    x, y = atoms.new(12), atoms.new(12)
    atoms.split(x, 6)
    _, six = atoms.factor(y, [2, 6])
    assert atoms.union(x, y) is True
    assert roots(atoms, atoms.expand([(x,)])) == [((atoms.find(six), 6),)] * 2


def test_unify_segment_boundary_inside_a_factor_gives_up_and_freezes():
    # (2 x 3) against 2 + 4: the cut at 2 falls inside a stride of 3.
    atoms = Atoms()
    a, b, c, d = atoms.new(2), atoms.new(3), atoms.new(2), atoms.new(4)
    assert atoms.unify([(a, b)], [(c,), (d,)]) is False
    assert {atoms.frozen[atoms.find(x)] for x in (a, b, c, d)} == {MISMATCH}


def test_unify_misaligned_products_gives_up_and_freezes_both():
    # 2 x 6 against 3 x 4 (same total): no row-major refinement matches them.
    atoms = Atoms()
    a, b, c, d = atoms.new(2), atoms.new(6), atoms.new(3), atoms.new(4)
    assert atoms.unify([(a, b)], [(c, d)]) is False
    for x in (a, b, c, d):
        assert atoms.frozen[atoms.find(x)] == MISMATCH


def test_unify_product_that_does_not_divide_gives_up():
    atoms = Atoms()
    hidden, p, q = atoms.new(12), atoms.new(3), atoms.new(5)  # 12 vs 3 x 5 = 15
    assert atoms.unify([(hidden,)], [(p, q)]) is False
    assert all(atoms.frozen.get(atoms.find(x)) == MISMATCH for x in (hidden, p, q))


@pytest.mark.parametrize(
    "left, right",
    [([6], [8]), ([8], [6]), ([6], [4, 4])],
    ids=["6-vs-8", "8-vs-6", "6-vs-4+4"],
)
def test_unify_of_different_total_sizes_is_refused(left, right):
    atoms = Atoms()
    lay_l = [(atoms.new(n),) for n in left]
    lay_r = [(atoms.new(n),) for n in right]
    try:
        ok = atoms.unify(lay_l, lay_r)
    except (AssertionError, ValueError):
        return
    assert_refinements_sum(atoms)
    assert ok is False


# -- refinement ------------------------------------------------------------------------------
def test_split_makes_two_consecutive_parts():
    atoms = Atoms()
    a = atoms.new(10)
    first, second = atoms.split(a, 3)
    assert (atoms.size[first], atoms.size[second]) == (3, 7)
    assert atoms.refine == {a: ("cat", [first, second])}
    assert atoms.expand([(a,)]) == [(first,), (second,)]
    assert atoms.version == 1


def test_factor_makes_a_row_major_product():
    atoms = Atoms()
    a = atoms.new(24)
    groups, per_group = atoms.factor(a, [4, 6])
    assert (atoms.size[groups], atoms.size[per_group]) == (4, 6)
    assert atoms.refine == {a: ("prod", [groups, per_group])}
    assert atoms.expand([(a,)]) == [(groups, per_group)]
    assert atoms.seg_size((groups, per_group)) == 24


def test_refining_a_refined_atom_is_an_internal_error():
    atoms = Atoms()
    a = atoms.new(4)
    atoms.split(a, 2)
    with pytest.raises(AssertionError):
        atoms.split(a, 1)


# -- expansion -------------------------------------------------------------------------------
def test_expand_distributes_a_split_leading_factor():
    # flatten(cat([A, B], 1)) over (C, H): [(A, H), (B, H)].
    atoms = Atoms()
    c, h = atoms.new(6), atoms.new(3)
    a, b = atoms.split(c, 2)
    assert atoms.expand([(c, h)]) == [(a, h), (b, h)]


def test_expand_keeps_a_split_inner_factor_whole():
    atoms = Atoms()
    c, h = atoms.new(6), atoms.new(3)
    atoms.split(c, 2)
    assert atoms.expand([(h, c)]) == [(h, c)]  # interleaved: not expressible as segments


def test_expand_flattens_nested_products_and_drops_size_one_factors():
    atoms = Atoms()
    hidden, one, two = atoms.new(12), atoms.new(1), atoms.new(2)
    heads, head_dim = atoms.factor(hidden, [3, 4])
    assert atoms.expand([(one, hidden, two)]) == [(heads, head_dim, two)]
    assert atoms.expand([(one,)]) == [(one,)]  # a lone size-1 factor stays
    other_one = atoms.new(1)
    assert atoms.expand([(one, other_one)]) == [(one,)]


def test_expand_splits_a_factored_atom_whose_head_was_split():
    atoms = Atoms()
    hidden = atoms.new(12)
    heads, head_dim = atoms.factor(hidden, [3, 4])
    _, rest = atoms.split(heads, 1)  # one head | two heads
    assert atoms.expand([(hidden,)]) == [(head_dim,), (rest, head_dim)]
    assert sizes(atoms, [(hidden,)]) == [(4,), (2, 4)]


def test_expand_resolves_roots():
    atoms = Atoms()
    a, b = atoms.new(5), atoms.new(5)
    atoms.union(a, b)
    assert atoms.expand([(b,)]) == [(atoms.find(b),)]
    assert atoms.expand([]) == []


def test_seg_size_is_the_product_of_root_sizes():
    atoms = Atoms()
    a, b, c = atoms.new(2), atoms.new(3), atoms.new(5)
    assert atoms.seg_size((a, b, c)) == 30
    assert atoms.seg_size(()) == 1


# -- flags -------------------------------------------------------------------------------------
def test_flags_live_on_roots_and_merge_on_union():
    atoms = Atoms()
    a, b = atoms.new(4), atoms.new(4)
    atoms.flag(a, "produce")
    atoms.flag(b, "cross")
    assert not atoms.has(b, "produce")
    atoms.union(a, b)
    for x in (a, b):
        assert atoms.has(x, "produce") and atoms.has(x, "cross")
    assert atoms.flags[atoms.find(a)] == {"produce", "cross"}


def test_flags_reach_refinement_children_before_and_after_refining():
    atoms = Atoms()
    a, b = atoms.new(6), atoms.new(6)
    atoms.flag(a, "produce")
    parts = atoms.split(a, 2)  # refined after the flag
    factors = atoms.factor(b, [2, 3])
    atoms.flag(b, "cross")  # flagged after the refinement
    assert all(atoms.has(p, "produce") for p in parts)
    assert all(atoms.has(f, "cross") for f in factors)
    assert not any(atoms.has(p, "cross") for p in parts)


def test_flag_on_a_child_does_not_reach_the_parent_or_siblings():
    atoms = Atoms()
    a = atoms.new(6)
    first, second = atoms.split(a, 2)
    atoms.flag(first, "produce")
    assert not atoms.has(a, "produce")
    assert not atoms.has(second, "produce")


def test_union_with_a_refined_atom_passes_flags_to_its_parts():
    atoms = Atoms()
    plain, split = atoms.new(6), atoms.new(6)
    first, second = atoms.split(split, 3)
    atoms.flag(plain, "produce")
    atoms.union(plain, split)
    assert atoms.has(first, "produce") and atoms.has(second, "produce")


# -- freezing ----------------------------------------------------------------------------------
def test_freeze_reaches_atoms_unified_before_and_after():
    atoms = Atoms()
    a, b, c = atoms.new(3), atoms.new(3), atoms.new(3)
    atoms.union(a, b)
    atoms.freeze(b, "kept: model output")
    atoms.union(c, a)
    for x in (a, b, c):
        assert atoms.frozen[atoms.find(x)] == "kept: model output"


def test_freeze_reason_moves_to_the_new_root_and_the_first_one_wins():
    atoms = Atoms()
    a, b = atoms.new(3), atoms.new(3)
    atoms.freeze(b, "reason b")
    atoms.union(a, b)  # b's root is replaced by a's
    assert atoms.frozen == {atoms.find(a): "reason b"}

    atoms = Atoms()
    a, b = atoms.new(3), atoms.new(3)
    atoms.freeze(a, "reason a")
    atoms.freeze(b, "reason b")
    atoms.union(a, b)
    assert atoms.frozen[atoms.find(b)] == "reason a"
    atoms.freeze(a, "a later reason")
    assert atoms.frozen[atoms.find(a)] == "reason a"


def test_freeze_reaches_refinement_children_before_and_after_refining():
    atoms = Atoms()
    a, b = atoms.new(6), atoms.new(6)
    atoms.freeze(a, "early")
    early_parts = atoms.split(a, 4)
    late_factors = atoms.factor(b, [3, 2])
    atoms.freeze(b, "late")
    assert [atoms.frozen.get(p) for p in early_parts] == ["early", "early"]
    assert [atoms.frozen.get(f) for f in late_factors] == ["late", "late"]


def test_freezing_a_part_leaves_the_parent_and_sibling_prunable():
    atoms = Atoms()
    a = atoms.new(6)
    first, second = atoms.split(a, 4)
    atoms.freeze(first, "part")
    assert set(atoms.frozen) == {first}
    assert second not in atoms.frozen and a not in atoms.frozen


def test_union_of_a_frozen_atom_with_a_refined_one_freezes_its_parts():
    atoms = Atoms()
    frozen, split = atoms.new(6), atoms.new(6)
    atoms.freeze(frozen, "no rule")
    first, second = atoms.split(split, 1)
    atoms.union(split, frozen)
    assert atoms.frozen.get(first) == "no rule"
    assert atoms.frozen.get(second) == "no rule"


def test_freeze_layout_freezes_every_atom_of_every_segment():
    atoms = Atoms()
    a, b, c, d = atoms.new(2), atoms.new(3), atoms.new(4), atoms.new(5)
    atoms.freeze_layout([(a, b), (c,)], "why")
    assert atoms.frozen == {a: "why", b: "why", c: "why"}
    assert d not in atoms.frozen


def test_an_empty_product_expands_to_one_position():
    atoms = Atoms()
    assert atoms.expand([()]) == [()]
    assert atoms.layout_size([(), (atoms.new(3),)]) == 4
