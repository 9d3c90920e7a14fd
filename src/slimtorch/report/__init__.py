"""Tables and reports."""

from .html import read_run, render_report
from .table import format_table, human

__all__ = ["format_table", "human", "read_run", "render_report"]
