"""Tables and reports."""

from .table import format_table, human

__all__ = ["format_table", "human"]
