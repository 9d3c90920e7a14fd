"""Policy search against uniform width and depth alone, at the same measured latency.

For MNIST-1D and scikit-learn's digits, a residual CNN (``slimtorch.train.models``,
``width=16``: small enough that halving its latency costs accuracy) is trained here. Then, at
``speedup=2`` measured on this CPU (1 thread, batch 256):

- ``channels (uniform)``: ``prune_channels(speedup=2)``, one L1 ratio for every group;
- ``depth only``: ``prune_layers(speedup=2, score="loss")``;
- ``searched``: ``slimtorch.search(speedup=2, budget=...)`` over depth x stage widths x
  low-rank rewrites (rewrites apply to 2-D convs: none on MNIST-1D's Conv1d).

Each is distilled from the unpruned model for the same steps. Speed-ups are timed again here,
interleaved with the original. Test accuracy (%), per seed and mean. The proxy is checked
against what it stands for: the searched run's candidates that met the budget are each
distilled for the same steps, and the Spearman correlation of proxy (lower better) and
accuracy (higher better) is printed (-1 is a perfect proxy).

Run: python benchmarks/policy_search.py [--seeds 2] [--epochs 3] [--budget 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from latency_accuracy import speedup
from recovery import KD, TRAIN
from slimtorch import analyze, finetune, prune_channels, prune_layers, search
from slimtorch.nas import Policy
from slimtorch.nas.policy import build_structure, prune_width
from slimtorch.report.table import format_table
from slimtorch.train import accuracy, digits, mnist1d
from slimtorch.train.models import digits_resnet, mnist1d_resnet

SETS = {"mnist1d": (mnist1d, mnist1d_resnet, 30), "digits": (digits, digits_resnet, 20)}
WIDTH = 16


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        for i, j in enumerate(order):
            r[j] = float(i)
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.mean(ra), statistics.mean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else 0.0


def run(name: str, seed: int, epochs: int, budget: int, validate: int, tol: float) -> dict:
    load, factory, teacher_epochs = SETS[name]
    train, test = load("train"), load("test")
    torch.manual_seed(seed)
    teacher = finetune(factory(width=WIDTH), train, epochs=teacher_epochs, seed=seed, **TRAIN)
    teacher = teacher.model.eval()
    calib = [torch.stack([train[i][0] for i in range(b * 64, (b + 1) * 64)]) for b in range(4)]
    x = torch.stack([test[i][0] for i in range(256)])
    macs = analyze(teacher, x[:1]).macs

    def distill(model: torch.nn.Module) -> float:
        kd = finetune(model, train, teacher, epochs=epochs, seed=seed, **TRAIN, **KD).model
        return 100 * accuracy(kd, test)

    started = time.perf_counter()
    found = search(
        teacher, x, train, speedup=2.0, budget=budget, seed=seed, tolerance=tol, progress=False
    )
    search_s = time.perf_counter() - started
    variants = {
        "channels (uniform)": prune_channels(teacher, x, speedup=2.0).model,
        "depth only": prune_layers(teacher, x, speedup=2.0, data=calib, score="loss").model,
        "searched": found.model,
    }
    out = {"original": {"acc": 100 * accuracy(teacher, test), "macs": 1.0, "speedup": 1.0}}
    for label, model in variants.items():
        out[label] = {
            "macs": analyze(model, x[:1]).macs / macs,
            "speedup": speedup(model, teacher, x),
            "pruned": 100 * accuracy(model, test),
            "acc": distill(model),
        }
    out["searched"]["policy"] = Policy.from_dict(found.policy).describe(found.policy["level"])
    out["searched"]["level"] = found.policy["level"]
    # the proxy against real fine-tuned accuracy, on the best and worst feasible candidates
    feasible = sorted((c for c in found.candidates if c.feasible), key=lambda c: c.proxy)
    pick = feasible[: validate // 2] + feasible[-(validate - validate // 2) :]
    pick = list({id(c): c for c in pick}.values())
    proxies, accs = [], []
    for c in pick:
        policy = Policy.from_dict(c.policy.model_dump())
        structure = build_structure(teacher, x, policy, found_options(found))
        model = prune_width(structure, x, policy, found.plan["space"]["stages"], c.level,
                            found_options(found))  # fmt: skip
        proxies.append(c.proxy)
        accs.append(distill(model))
    out["proxy"] = {
        "spearman": spearman(proxies, accs), "n": len(pick), "search_s": search_s,
        "evaluated": found.plan["evaluated"],
    }  # fmt: skip
    return out


def found_options(found):
    from slimtorch.nas import SearchOptions

    return SearchOptions.from_dict(found.plan["options"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--validate", type=int, default=8, help="candidates fine-tuned")
    parser.add_argument("--sets", default="mnist1d,digits")
    parser.add_argument(
        "--tolerance", type=float, default=0.0, help="share over the budget the search accepts"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, notes = [], []
    for name in args.sets.split(","):
        runs = [
            run(name, s, args.epochs, args.budget, args.validate, args.tolerance)
            for s in range(args.seeds)
        ]
        for key in ("original", "channels (uniform)", "depth only", "searched"):
            accs = [r[key]["acc"] for r in runs]
            rows.append((
                name, key, f"{statistics.mean(r[key]['macs'] for r in runs):.3f}",
                f"{statistics.mean(r[key]['speedup'] for r in runs):.2f}x",
                "-" if key == "original" else
                f"{statistics.mean(r[key]['pruned'] for r in runs):.1f}",
                " / ".join(f"{a:.1f}" for a in accs), f"{statistics.mean(accs):.2f}",
            ))  # fmt: skip
        for s, r in enumerate(runs):
            p = r["proxy"]
            notes.append(
                f"{name} seed {s}: searched policy {r['searched']['policy']}, channel ratio "
                f"{r['searched']['level']:.2f}; {p['evaluated']} candidates in "
                f"{p['search_s']:.0f} s; proxy vs accuracy Spearman {p['spearman']:+.2f} "
                f"over {p['n']} candidates"
            )
    print(format_table(
        ("data", "model", "MACs kept", "speed-up bs256", "pruned acc",
         "after KD acc (seeds)", "mean"),
        rows,
    ))  # fmt: skip
    print("\n".join(notes))


if __name__ == "__main__":
    main()
