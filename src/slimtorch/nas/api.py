"""``search``: a compression policy searched against latency measured on this CPU.

The genes (``policy.Space``) are the removable blocks, a width multiplier per stage and the
convs that may be rewritten. A candidate's channels are then cut uniformly, stage by stage
times its multipliers, at the level (a bisection on the real, interleaved timing of the built
model against the original) that meets the latency budget, so every candidate is compared at
the budget, not at MACs. Its score is a cheap proxy: the distillation loss on held-out inputs
after a few distillation steps (``proxy="kd"``) or with none (``"output"``). Regularized
evolution (Real et al., AAAI 2019) explores the space from seeds that include the plain
answers (uniform width; the lowest-scored blocks removed), mutating one gene at a time.
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings as _warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .._forward import Inputs, check_model, copy_model, eval_mode, split_inputs
from .._validate import check_finite
from ..errors import InputError, PruneError, SlimTorchError
from ..graph.trace import trace
from ..measure.analyze import count_macs
from ..measure.latency import benchmark
from ..prune.channels.solve import measured_ms
from ..prune.depth import prune_layers
from ..report.table import format_table
from ..train import finetune
from ..train.losses import kd_kl, main_output, output_key
from .options import SearchOptions
from .policy import Policy, Space, build_structure, prune_width
from .state import Candidate, PolicyRecord, SearchState, fingerprint, load_state, save_state

__all__ = ["SearchResult", "search"]

_LEVEL_STEPS = 6  # bisection steps on the channel level of one candidate
_RECHECKS = 5  # best candidates timed a second time before one is chosen


@dataclass
class SearchResult:
    """What ``search`` found.

    Attributes:
        model: the chosen model (best proxy among the candidates that meet the budget),
            built from the policy; a plain ``nn.Module`` that ``slimtorch.save`` writes.
        policy: the chosen policy: ``remove``, ``width`` (stage multipliers), ``rewrite``,
            and ``level`` (its channel ratio).
        candidates: every evaluated candidate, in evaluation order.
        front: the Pareto front of (measured ms, proxy) over the candidates that ran.
        original_ms / target_ms: the original's measured latency and the budget.
        plan: JSON-serializable record of the above and the options.
    """

    model: nn.Module
    policy: dict[str, Any]
    candidates: list[Candidate]
    front: list[Candidate]
    original_ms: float
    target_ms: float
    plan: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        rows = [
            (
                "*" if c.policy.model_dump() == _record(self.policy) else "",
                f"{c.ms:.2f}",
                f"{self.original_ms / c.ms:.2f}x",
                f"{c.proxy:.4f}",
                f"{c.level:.2f}",
                Policy.from_dict(c.policy.model_dump()).describe(c.level),
            )
            for c in self.front
        ]
        return format_table(
            ("", "ms", "speed-up", "proxy", "channel ratio", "policy"),
            rows,
            title=(
                f"Pareto front of {len(self.candidates)} candidates (original "
                f"{self.original_ms:.2f} ms, budget {self.target_ms:.2f} ms; * chosen)"
            ),
        )

    def plot(self, path: str | os.PathLike) -> Path:
        """Writes the proxy against measured latency, front and budget marked (matplotlib)."""
        from ..report.plot import pareto_plot

        ran = [c for c in self.candidates if c.ms is not None and c.proxy is not None]
        return pareto_plot(
            [(c.ms, c.proxy) for c in ran],
            [(c.ms, c.proxy) for c in self.front],
            self.target_ms,
            self.original_ms,
            path,
        )


def _record(policy: dict[str, Any]) -> dict[str, Any]:
    return {k: policy[k] for k in ("remove", "width", "rewrite")}


def search(
    model: nn.Module,
    example_inputs: Inputs,
    data: Any,
    *,
    target_latency_ms: float | None = None,
    speedup: float | None = None,
    space: Sequence[str] = ("depth", "width", "rewrite"),
    budget: int = 24,
    heldout: Any = None,
    state: str | os.PathLike | None = None,
    proxy_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    progress: bool = True,
    options: SearchOptions | None = None,
    **kwargs: Any,
) -> SearchResult:
    """Searches which blocks to remove, how wide each stage stays and which convs to rewrite,
    under a latency budget measured on this CPU.

    Args:
        model: the trained model (not modified); also the teacher of the proxy.
        example_inputs: the inputs every latency is timed on (batch size included).
        data: training data for the proxy's distillation steps, as ``finetune`` takes it (a
            ``Dataset`` of ``(x, y)`` or an iterable of batches).
        target_latency_ms / speedup: the budget: ms of one forward on ``example_inputs`` at
            ``threads``, or how many times faster than the original.
        space: any of ``"depth"``, ``"width"``, ``"rewrite"``.
        budget: candidates to evaluate (seeds included).
        heldout: input batches the proxy is measured on (default: the last 256 samples of a
            ``Dataset``, or the first 4 batches of an iterable).
        state: a JSON file that records every candidate; rerun with the same arguments to
            resume a killed search, or to extend one with a larger ``budget``.
        proxy_fn: ``proxy_fn(student_output, teacher_output) -> loss`` instead of the
            default (KL at ``temperature`` for logits, relative squared error otherwise).
        progress: a progress bar (tqdm).
        options / **kwargs: a ``SearchOptions`` or its fields (``threads``, ``population``,
            ``proxy``, ``proxy_steps``, ``multipliers``, ``rewrites``, ``seed``, ...).

    Returns:
        A ``SearchResult``: ``.model``, ``.policy``, ``.front``; ``print()`` it, ``.plot()``.

    Raises:
        PruneError: the budget is below what the fastest policy of the space measures.
    """
    opts = options or SearchOptions(
        target_latency_ms=target_latency_ms, speedup=speedup, space=tuple(space), budget=budget,
        **kwargs,
    )  # fmt: skip
    check_model(model)
    check_finite(model, "search")
    teacher = copy_model(model).eval()
    held = _heldout(data, heldout)
    for batch in held:
        split_inputs(batch)
    sp = Space.of(teacher, example_inputs, opts)
    if not sp.genes():
        raise PruneError(
            f"the space {list(opts.space)} of this model is empty: no removable block, stage or "
            "rewritable conv was found; use prune_channels for width alone."
        )
    ctx = _Context(teacher, example_inputs, data, held, sp, opts, proxy_fn)
    # the budget may grow between runs: a resumed search goes on where the last one stopped
    key = fingerprint(teacher)
    odict = {k: v for k, v in opts.to_dict().items() if k != "budget"}
    if state is not None and Path(state).exists():
        st = load_state(state, key, odict)
        ctx.original_ms = st.original_ms
    else:
        ctx.original_ms = benchmark(
            teacher, example_inputs, opts.threads, warmup=3, repeats=15
        ).median_ms
        target = opts.target_latency_ms or ctx.original_ms / float(opts.speedup or 1)
        st = SearchState(model=key, options=odict, original_ms=ctx.original_ms, target_ms=target)
    ctx.target_ms = st.target_ms
    ctx.memo = {_key(c): c for c in st.candidates}

    def record(c: Candidate) -> None:
        st.candidates.append(c)
        if state is not None:
            save_state(state, st)

    ctx.record = record

    def record_check() -> None:  # a second timing was added to a candidate of the state
        if state is not None:
            save_state(state, st)

    ctx.record_check = record_check
    bar = tqdm(total=opts.budget, desc="search", disable=not progress, unit="cand")
    ctx.bar = bar
    try:
        if st.seeds is None:
            _check_reachable(ctx)
            st.seeds = [PolicyRecord(**p.to_dict()) for p in _plain_seeds(ctx)]
            if state is not None:
                save_state(state, st)
        plain = [Policy.from_dict(p.model_dump()) for p in st.seeds]
        _evolve(ctx, plain, random.Random(opts.seed))
    finally:
        bar.close()
    return _result(ctx, st)


class _Context:
    def __init__(self, teacher, x, data, held, space, opts, proxy_fn) -> None:
        self.teacher, self.x, self.data, self.held = teacher, x, data, held
        self.space, self.opts, self.proxy_fn = space, opts, proxy_fn
        self.original_ms = self.target_ms = 0.0
        self.memo: dict[str, Candidate] = {}
        self.measured = 0  # candidates measured by this run (not taken from the state file)
        self.order: list[Candidate] = []  # this run's path (memo hits included)
        self.record: Callable[[Candidate], None] = lambda c: None
        self.record_check: Callable[[], None] = lambda: None
        self.bar: Any = None

    def fits(self, ms: float) -> bool:
        return ms <= self.target_ms * (1 + self.opts.tolerance)


def _heldout(data: Any, heldout: Any) -> list[Inputs]:
    if heldout is not None:
        out = [heldout] if isinstance(heldout, torch.Tensor | dict) else list(heldout)
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, list):
        n = len(data)
        idx = list(range(max(0, n - 256), n))
        out = [torch.stack([data[i][0] for i in idx[j : j + 64]]) for j in range(0, len(idx), 64)]
    else:
        out = []
        for batch in data:
            out.append(batch[0] if isinstance(batch, tuple | list) else batch)
            if len(out) == 4:
                break
    if not out:
        raise InputError(
            "search needs held-out inputs for its proxy: pass heldout=[batch, ...] or data "
            "with at least one batch."
        )
    return out


def _check_reachable(ctx: _Context) -> None:
    """The fastest policy of the space (every block gone, every rewrite, the deepest width
    cut) must meet the budget, or nothing will."""
    sp, opts = ctx.space, ctx.opts
    kind = next(iter(opts.rewrites), None)
    fastest = Policy.make(sp.blocks, None, {n: kind for n in sp.rewritable} if kind else None)
    try:
        structure = build_structure(ctx.teacher, ctx.x, fastest, opts)
        level = opts.max_ratio if sp.stages else 0.0
        m = prune_width(structure, ctx.x, fastest, sp.stages, level, opts)
        ms = measured_ms(m, ctx.teacher, ctx.x, opts.threads, ctx.original_ms)
    except SlimTorchError as exc:
        raise PruneError(f"the fastest policy of the space cannot be built: {exc}") from None
    if not ctx.fits(ms):
        raise PruneError(
            f"the budget {ctx.target_ms:.2f} ms (original {ctx.original_ms:.2f} ms at "
            f"{opts.threads} thread(s)) is below what the space {list(opts.space)} reaches: "
            f"its fastest policy ({fastest.describe()}, channels cut by {level:.0%}) measures "
            f"{ms:.2f} ms. Raise the target, or widen the space."
        )


def _plain_seeds(ctx: _Context) -> list[Policy]:
    """Uniform width; depth alone at the budget (the fewest lowest-scored blocks whose removal
    meets it) and one block fewer (width makes up the rest); a quarter of the blocks removed.
    Timed, so a resumed search takes them from its state file."""
    sp = ctx.space
    seeds = [Policy()]
    if sp.blocks:
        scores = prune_layers(
            ctx.teacher, ctx.x, n=1, data=ctx.held, score="loss", blocks=sp.blocks
        ).plan["layers"]["scores"]
        ranked = sorted(sp.blocks, key=lambda b: scores.get(b, math.inf))
        k = _depth_at_budget(ctx, ranked)
        for n in (k, k - 1, max(1, round(len(ranked) / 4))):
            if 0 < n <= len(ranked):
                seeds.append(Policy.make(ranked[:n]))
    return list(dict.fromkeys(seeds))


def _seeds(ctx: _Context, plain: list[Policy], rng: random.Random) -> list[Policy]:
    seeds = list(plain)
    while len(seeds) < ctx.opts.population:
        seeds.append(_random_policy(ctx, rng))
    return list(dict.fromkeys(seeds))


def _depth_at_budget(ctx: _Context, ranked: list[str]) -> int:
    """The fewest of ``ranked`` (removed in order) that meet the budget, bisected on timings
    (``len(ranked)`` if none does)."""
    lo, hi = 0, len(ranked)
    while lo < hi:
        mid = (lo + hi) // 2
        if mid == 0:
            lo = 1
            continue
        built = build_structure(ctx.teacher, ctx.x, Policy.make(ranked[:mid]), ctx.opts)
        ms = measured_ms(built, ctx.teacher, ctx.x, ctx.opts.threads, ctx.original_ms)
        if ctx.fits(ms):
            hi = mid
        else:
            lo = mid + 1
    return hi


def _random_policy(ctx: _Context, rng: random.Random) -> Policy:
    sp, opts = ctx.space, ctx.opts
    p_remove = rng.uniform(0.0, 0.6)
    kinds = list(opts.rewrites)
    return Policy.make(
        [b for b in sp.blocks if rng.random() < p_remove],
        {s: rng.choice(opts.multipliers) for s in sp.stages},
        {n: rng.choice(kinds) for n in sp.rewritable if rng.random() < 0.3},
    )


def _mutate(ctx: _Context, parent: Policy, rng: random.Random) -> Policy:
    sp, opts = ctx.space, ctx.opts
    remove, width, rewrite = set(parent.remove), dict(parent.width), dict(parent.rewrite)
    genes = [("depth", b) for b in sp.blocks] + [("width", s) for s in sp.stages]
    genes += [("rewrite", n) for n in sp.rewritable]
    what, name = rng.choice(genes)
    if what == "depth":
        remove ^= {name}
    elif what == "width":
        mults = list(opts.multipliers)
        i = mults.index(width.get(name, 1.0)) + rng.choice((-1, 1))
        width[name] = mults[min(max(i, 0), len(mults) - 1)]
    elif name in rewrite:
        del rewrite[name]
    else:
        rewrite[name] = rng.choice(list(opts.rewrites))
    return Policy.make(remove, width, rewrite)


def _evolve(ctx: _Context, plain: list[Policy], rng: random.Random) -> None:
    opts = ctx.opts
    population: list[Candidate] = []
    for policy in _seeds(ctx, plain, rng):
        if len(ctx.order) >= opts.budget:
            return
        population.append(_evaluate(ctx, policy))
    while len(ctx.order) < opts.budget:
        drawn = rng.sample(population, min(opts.tournament, len(population)))
        parent = min(drawn, key=_fitness)
        child = Policy.from_dict(parent.policy.model_dump())
        seen = {_key(c) for c in ctx.order}
        for _ in range(20):  # a child not evaluated in this run yet
            child = _mutate(ctx, child, rng)
            if child.key not in seen:
                break
        population.append(_evaluate(ctx, child))
        if len(population) > opts.population:
            population.pop(0)  # the oldest goes (aging), not the worst


def _key(c: Candidate) -> str:
    return Policy.from_dict(c.policy.model_dump()).key


def _fitness(c: Candidate) -> float:
    return c.proxy if c.feasible and c.proxy is not None else math.inf


def _evaluate(ctx: _Context, policy: Policy) -> Candidate:
    hit = ctx.memo.get(policy.key)
    if hit is None:
        started = time.perf_counter()
        try:
            hit = _measure(ctx, policy)
        except SlimTorchError as exc:
            hit = Candidate(policy=PolicyRecord(**policy.to_dict()), error=str(exc))
        hit.seconds = round(time.perf_counter() - started, 3)
        ctx.memo[policy.key] = hit
        ctx.measured += 1
        ctx.record(hit)
    ctx.order.append(hit)
    if ctx.bar is not None:
        ctx.bar.update(1)
        best = min(map(_fitness, ctx.order))
        ctx.bar.set_postfix(best=f"{best:.4f}" if best < math.inf else "-")
    return hit


def _measure(ctx: _Context, policy: Policy) -> Candidate:
    """Builds the policy at the channel level that meets the budget, times it, scores it."""
    sp, opts = ctx.space, ctx.opts
    structure = build_structure(ctx.teacher, ctx.x, policy, opts)

    def ms_at(level: float) -> tuple[nn.Module, float]:
        m = prune_width(structure, ctx.x, policy, sp.stages, level, opts)
        return m, measured_ms(m, ctx.teacher, ctx.x, opts.threads, ctx.original_ms)

    model, ms = ms_at(0.0)
    level = 0.0
    if not ctx.fits(ms) and sp.stages:
        hi = opts.max_ratio / max(dict(policy.width).values(), default=1.0)
        hi = min(hi, opts.max_ratio)
        m_hi, ms_hi = ms_at(hi)
        if ctx.fits(ms_hi):
            lo, model, ms, level = 0.0, m_hi, ms_hi, hi
            for _ in range(_LEVEL_STEPS):
                mid = (lo + level) / 2
                m_mid, ms_mid = ms_at(mid)
                if ctx.fits(ms_mid):
                    model, ms, level = m_mid, ms_mid, mid
                else:
                    lo = mid
                if abs(ms - ctx.target_ms) <= 0.02 * ctx.target_ms:
                    break
    rec = PolicyRecord(**policy.to_dict())
    graph = trace(model, ctx.x, meta=True)
    macs = int(sum(count_macs(graph).values()))
    params = sum(p.numel() for p in model.parameters())
    if not ctx.fits(ms):
        return Candidate(policy=rec, level=level, ms=ms, macs=macs, params=params)
    return Candidate(
        policy=rec, level=round(level, 5), ms=ms, macs=macs, params=params,
        proxy=_proxy(ctx, model), feasible=True,
    )  # fmt: skip


def _proxy(ctx: _Context, model: nn.Module) -> float:
    opts = ctx.opts
    student = model
    if opts.proxy == "kd":
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            student = finetune(
                model, ctx.data, ctx.teacher, steps=opts.proxy_steps, lr=opts.lr,
                batch_size=opts.batch_size, seed=opts.seed, progress=False, warmup_steps=0,
            ).model  # fmt: skip
    total = 0.0
    with eval_mode(student), torch.no_grad():
        for batch in ctx.held:
            args, kw = split_inputs(batch)
            s, t = student(*args, **kw), ctx.teacher(*args, **kw)
            total += float(_loss(ctx, s, t))
    return total / len(ctx.held)


def _loss(ctx: _Context, s: Any, t: Any) -> torch.Tensor:
    a, b = main_output(s), main_output(t)
    if ctx.proxy_fn is not None:
        return ctx.proxy_fn(a, b)
    if output_key(t) == "logits" or (a.ndim == 2 and output_key(t) == "tensor"):
        return kd_kl(a, b, ctx.opts.temperature)
    return (a.float() - b.float()).pow(2).sum() / b.float().pow(2).sum().clamp_min(1e-12)


def pareto(cands: Sequence[Candidate]) -> list[Candidate]:
    """The candidates no other beats on both measured ms and proxy, by ms."""
    ran = sorted(
        (c for c in cands if c.ms is not None and c.proxy is not None),
        key=lambda c: (c.ms, c.proxy),
    )
    front: list[Candidate] = []
    for c in ran:
        if not front or c.proxy < front[-1].proxy:
            front.append(c)
    return front


def _build(ctx: _Context, policy: Policy, level: float) -> nn.Module:
    structure = build_structure(ctx.teacher, ctx.x, policy, ctx.opts)
    return prune_width(structure, ctx.x, policy, ctx.space.stages, level, ctx.opts)


def _result(ctx: _Context, st: SearchState) -> SearchResult:
    feasible = [c for c in ctx.order if c.feasible]
    if not feasible:
        raise PruneError(
            f"none of the {len(ctx.order)} candidates met the budget {ctx.target_ms:.2f} ms "
            f"(original {ctx.original_ms:.2f} ms); raise budget= or the target."
        )
    # The best of many candidates timed near the budget is likely one whose timing came out
    # low (the winner's curse): the chosen one is timed again, and the next best is taken
    # while that second timing misses. Second timings are kept in the state file.
    warnings: list[str] = []
    ranked = sorted(feasible, key=_fitness)
    for best in ranked[:_RECHECKS]:
        policy, level = Policy.from_dict(best.policy.model_dump()), best.level or 0.0
        model = _build(ctx, policy, level)
        if best.checked_ms is None:
            best.checked_ms = measured_ms(
                model, ctx.teacher, ctx.x, ctx.opts.threads, ctx.original_ms
            )
            ctx.record_check()
        if ctx.fits(best.checked_ms):
            break
        warnings.append(
            f"{policy.describe(level)} measured {best.ms:.2f} ms, then {best.checked_ms:.2f} ms "
            f"on a second timing, over the budget {ctx.target_ms:.2f} ms: the next best is taken"
        )
    else:
        best = ranked[0]
        policy = Policy.from_dict(best.policy.model_dump())
        model = _build(ctx, policy, best.level or 0.0)
        warnings.append("no candidate met the budget on a second timing; the best proxy is kept")
    chosen = {**policy.to_dict(), "level": best.level}
    uniq = list({_key(c): c for c in ctx.order}.values())
    front = pareto(uniq)
    plan = {
        "options": ctx.opts.to_dict(),
        "space": {
            "blocks": ctx.space.blocks,
            "stages": ctx.space.stages,
            "rewritable": ctx.space.rewritable,
        },
        "original_ms": ctx.original_ms,
        "target_ms": ctx.target_ms,
        "chosen": {
            **chosen,
            "ms": best.ms,
            "checked_ms": best.checked_ms,
            "proxy": best.proxy,
            "macs": best.macs,
        },
        "evaluated": len(uniq),
        "measured_now": ctx.measured,
    }
    return SearchResult(
        model=model.eval(),
        policy=chosen,
        candidates=uniq,
        front=front,
        original_ms=ctx.original_ms,
        target_ms=ctx.target_ms,
        plan=plan,
        warnings=warnings,
    )
