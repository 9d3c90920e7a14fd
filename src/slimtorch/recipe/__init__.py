"""Recipes: a compression pipeline written down once in YAML, validated up front, rerun and
resumed (``slimtorch run recipe.yaml``)."""

from .run import RunResult, load_recipe, run_recipe
from .schema import STEPS, Recipe, validate

__all__ = ["STEPS", "Recipe", "RunResult", "load_recipe", "run_recipe", "validate"]
