import json
import os
import random
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from slimtorch.cli import main
from slimtorch.errors import ConfigError, FormatError
from slimtorch.report import read_run, render_report

CHARTS = ("latency", "widths", "breakdown", "pareto", "sensitivity")
HEADINGS = (
    "Before / after",
    "Latency",
    "Layer widths",
    "Latency by layer",
    "Pareto front",
    "Sensitivity",
    "Steps",
    "Warnings (2)",
)
EVIL = "distilled <script>alert('x')</script>"
# Medians per (backend, threads): baseline, pruned, distilled. Speed-ups 2.00x/1.60x/2.50x...
MEDIANS = {
    ("torch", 1): (10.0, 5.0, 4.0),
    ("torch", 4): (4.0, 2.5, 2.0),
    ("onnxruntime", 1): (8.0, 4.0, 3.2),
    ("onnxruntime", 4): (3.2, 1.6, 1.28),
}


def _timings(i: int) -> list[dict]:
    out = [
        {"backend": b, "threads": t, "median_ms": m[i], "p90_ms": m[i] * 1.1, "iqr_ms": m[i] / 20}
        for (b, t), m in MEDIANS.items()
    ]
    if i == 2:  # int8 on one backend: compared with the baseline's float timing there
        out.append(
            {"backend": "onnxruntime", "threads": 1, "median_ms": 2.0, "iqr_ms": 0.1, "int8": True}
        )
    return out


def realistic_run(layers: int = 30) -> dict:
    rng = random.Random(0)
    names = [f"features.{i}.conv" for i in range(layers)]
    widths = [
        {"layer": n, "before": 64 * (1 + i // 10), "after": 64 * (1 + i // 10) // (1 + i % 3)}
        for i, n in enumerate(names)
    ]
    models = ["baseline", "pruned 2x", EVIL]
    breakdown = {
        m: [{"layer": n, "ms": rng.uniform(0.01, 1.0) / (1 + k)} for n in names[k:]]
        for k, m in enumerate(models)  # pruning removed features.0 (and .1) in the later ones
    }
    front = [[2.5, 0.6], [4.0, 0.3], [6.0, 0.2], [9.0, 0.12]]
    points = [[rng.uniform(2.5, 10), rng.uniform(0.62, 1.0)] for _ in range(36)] + front
    sensitivity = {
        n: [[s / 10, 0.97 - (s / 10) ** 2 * rng.uniform(0.05, 0.8)] for s in range(10)]
        for n in names
    }
    return {
        "title": "digits_cnn: prune to 2x, distill",
        "recipe": "recipes/digits_cnn.yaml",
        "created": "2025-06-01T12:00:00+00:00",
        "models": [
            {
                "name": name,
                "params": [1_234_567, 617_000, 617_000][i],
                "macs": [45_600_000, 22_800_000, 22_800_000][i],
                "size_bytes": [4_938_268, 2_470_000, None][i],
                "accuracy": [0.9712, 0.9533, None][i],
                "latency": _timings(i),
            }
            for i, name in enumerate(models)
        ],
        "widths": widths,
        "breakdown": breakdown,
        "pareto": {"points": points, "front": front, "target_ms": 5.0, "original_ms": 10.0},
        "sensitivity": sensitivity,
        "steps": [
            {"step": "prune", "seconds": 12.3, "summary": "2.00x fewer MACs"},
            {"step": "distill", "seconds": 245.0, "summary": "300 steps, loss 0.12"},
        ],
        "warnings": ["layer fc2 kept whole: <it feeds the output>", "onnxruntime int8 only"],
    }


class _Page(HTMLParser):
    """Headings, chart elements (id -> child tags) and the rows of each section's table."""

    def __init__(self):
        super().__init__()
        self.headings, self.charts, self.rows = [], {}, {}
        self._section = self._chart = self._text = None
        self._row = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._depth += 1
        if tag == "section":
            self._section = attrs["id"].removeprefix("sec-")
        elif tag == "div" and "chart" in (attrs.get("class") or "").split():
            self._chart = attrs["id"]
            self.charts[self._chart] = []
        elif self._chart and tag in ("svg", "img"):
            self.charts[self._chart].append(tag)
        elif tag == "h2":
            self._text = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._text = []
        elif tag == "br" and self._text is not None:
            self._text.append("\n")

    def handle_endtag(self, tag):
        if tag == "h2":
            self.headings.append("".join(self._text))
            self._text = None
        elif tag in ("td", "th") and self._row is not None:
            self._row.append("".join(self._text).strip())
            self._text = None
        elif tag == "tr":
            self.rows.setdefault(self._section, []).append(self._row)
            self._row = None
        elif tag == "div" and self._chart:
            self._chart = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    pytest.importorskip("matplotlib")
    return render_report(realistic_run(), tmp_path_factory.mktemp("report") / "report.html")


def test_sections_in_order(report):
    page = _parse(report.read_text())
    assert page.headings == list(HEADINGS)
    assert sorted(page.charts) == sorted(f"chart-{c}" for c in CHARTS)
    assert all(tags == ["svg"] for tags in page.charts.values()), page.charts


def test_summary_numbers(report):
    header, baseline, pruned, distilled = _parse(report.read_text()).rows["summary"]
    assert header == [
        *("model", "params", "MACs", "size, MB", "accuracy"),
        *("torch\n1 thread", "torch\n4 threads", "onnxruntime\n1 thread"),
        *("onnxruntime\n1 thread, int8", "onnxruntime\n4 threads"),
    ]
    assert baseline[:5] == ["baseline", "1.23M", "45.60M", "4.94", "97.12%"]
    assert baseline[5] == "10.00 ± 0.25\n1.00×" and baseline[8] == "–"
    assert distilled[0] == EVIL and distilled[3:5] == ["–", "–"]
    # median ± IQR/2, then the speed-up against the baseline on the same backend and threads
    assert pruned[5:] == [
        *("5.00 ± 0.12\n2.00×", "2.50 ± 0.06\n1.60×", "4.00 ± 0.10\n2.00×"),
        *("–", "1.60 ± 0.04\n2.00×"),
    ]
    speedups = [cell.split("\n")[1] for cell in distilled[5:]]
    assert speedups == ["2.50×", "2.00×", "2.50×", "4.00×", "2.50×"]  # int8 vs baseline float


def test_text_is_escaped(report):
    text = report.read_text()
    assert "<script" not in text.lower()
    assert "distilled &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "&lt;it feeds the output&gt;" in text


def test_self_contained(report):
    text = report.read_text()
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        'xmlns:xlink="http://www.w3.org/1999/xlink"', ""
    )
    assert "https://" not in text and "<link" not in text and " src=" not in text


def test_notes_of_the_sections(report):
    text = report.read_text()
    assert "10 of 30 layers keep their width and are not shown." in text  # i % 3 == 0
    assert "40 candidates measured, 4 on the front. Budget 5.00 ms (2.00× faster" in text
    assert "30 layers; the 8 whose metric changes most are named" in text
    assert "4 min 17 s" in text  # the steps' total, 257.3 s


def test_minimal_run_needs_no_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    run = {"title": "t", "models": [{"name": "m", "params": 10, "macs": 20}]}
    nulls = dict.fromkeys(
        ("recipe", "created", "widths", "breakdown", "pareto", "sensitivity", "steps", "warnings")
    )
    for i, record in enumerate((run, {**run, **nulls})):
        page = _parse(render_report(record, tmp_path / f"{i}.html").read_text())
        assert page.headings == ["Before / after"] and page.charts == {}
        assert page.rows["summary"] == [
            ["model", "params", "MACs", "size, MB", "accuracy"],
            ["m", "10", "20", "–", "–"],
        ]
        assert "Latency:" not in (tmp_path / f"{i}.html").read_text()  # no timing, no note


def test_charts_without_matplotlib_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=r"pip install 'slimtorch\[report\]'"):
        render_report(realistic_run(), tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_large_run_stays_small(tmp_path):
    pytest.importorskip("matplotlib")
    run = realistic_run(layers=200)
    for w in run["widths"]:
        w["after"] = w["before"] - 1  # every layer changed: the chart keeps 60
    text = render_report(run, tmp_path / "r.html").read_text()
    assert len(text.encode()) < 2_000_000
    assert "The 60 layers whose width changed most are shown, of 200 that changed." in text
    chart = text[text.index('id="chart-widths"') :]
    assert chart[: chart.index("</div>")].count(">features.") == 60  # one tick label a layer


def test_bad_record_lists_every_problem(tmp_path):
    run = realistic_run()
    run["models"][1]["accuracy"] = 95.3
    run["models"][0]["latency"].append(dict(run["models"][0]["latency"][0]))
    run["pareto"]["front"] = [[1.0]]
    run["models"][2]["latency"][0]["median_ms"] = float("nan")
    del run["title"]
    with pytest.raises(ConfigError) as err:
        render_report(run, tmp_path / "r.html")
    message = str(err.value)
    assert "run.title is missing" in message
    assert "models[1].accuracy is 95.3; it must be a fraction in 0..1" in message
    assert "models[0].latency has two timings of torch, 1 thread" in message
    assert "pareto.front is [[1.0]]" in message
    assert "models[2].latency[0].median_ms is nan; it must be a finite number" in message


def test_read_run(tmp_path):
    run = realistic_run()
    (tmp_path / "run.json").write_text(json.dumps(run))
    assert read_run(tmp_path) == run
    assert read_run(tmp_path / "run.json") == run


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        (None, ConfigError, r"run\.json' does not exist"),
        ('{"title": "t", "models": [', FormatError, r"run\.json' is not valid JSON: .* line 1"),
        ("[1, 2]", FormatError, r"run\.json' is not a run record: run must be an object"),
        ('{"title": "t", "models": []}', FormatError, r"run\.models is \[\]; it must be a non-"),
        (b"\xff\xfe", FormatError, r"run\.json' is not UTF-8"),
    ],
)
def test_read_run_errors_name_the_file(tmp_path, content, error, match):
    if isinstance(content, bytes):
        (tmp_path / "run.json").write_bytes(content)
    elif content is not None:
        (tmp_path / "run.json").write_text(content)
    with pytest.raises(error, match=match) as err:
        read_run(tmp_path)
    assert str(tmp_path / "run.json") in str(err.value)


def test_read_run_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_run(tmp_path / "nope")


def test_cli(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    (tmp_path / "run.json").write_text(json.dumps(realistic_run()))
    assert main(["report", str(tmp_path)]) == 0
    out = tmp_path / "report.html"
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert len(_parse(out.read_text()).charts) == len(CHARTS)
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "other.html")]) == 0
    assert (tmp_path / "other.html").is_file()


def test_cli_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "run.json' does not exist" in capsys.readouterr().err


CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Runs headless Chromium (as CI does, as root: no sandbox), failing on a non-zero exit."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run must install chromium (apt-get)")
        pytest.skip(f"needs {CHROMIUM}")
    cmd = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)


def test_chromium_renders_the_charts(report, tmp_path):
    url = report.resolve().as_uri()
    dom = chromium(tmp_path / "profile", "--dump-dom", url).stdout
    page = _parse(dom)
    assert page.headings == list(HEADINGS)
    assert sorted(page.charts) == sorted(f"chart-{c}" for c in CHARTS)
    assert all("svg" in tags for tags in page.charts.values()), page.charts

    shot = tmp_path / "shot.png"
    chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2400", url)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1280)
    ink = (pixels.min(axis=2) < 0.9).mean()  # share of pixels that are not near white
    assert pixels.std() > 0.05 and 0.02 < ink < 0.6, (pixels.std(), ink)
