"""Compression policy search: which blocks go, how wide each stage stays and which convs are
rewritten, under a latency budget measured on this CPU (``search``). It sits above pruning,
conversion and training, and calls them through their public functions."""

from .api import SearchResult, pareto, search
from .options import SearchOptions
from .policy import Policy, Space
from .state import Candidate

__all__ = ["Candidate", "Policy", "SearchOptions", "SearchResult", "Space", "pareto", "search"]
