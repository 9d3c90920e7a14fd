"""``slimtorch report``: one self-contained HTML page of a recipe run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..report import read_run, render_report
from ..report.record import RUN_FILE


def cmd_report(args: argparse.Namespace) -> int:
    run = read_run(args.run_dir)
    folder = Path(args.run_dir)
    output = args.output or (folder if folder.is_dir() else folder.parent) / "report.html"
    path = render_report(run, output)
    print(f"wrote {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the HTML report of a recipe run")
    p.add_argument("run_dir", metavar="RUN_DIR", help=f"folder of the run (holds {RUN_FILE})")
    p.add_argument("-o", "--output", help="HTML file to write (default RUN_DIR/report.html)")
    p.set_defaults(func=cmd_report)
