"""Recipe runner: recipes (``recipe.py``), task adapters (``tasks.py``), data layouts (``layouts.py``) and the
runner that spreads a recipe's points over processes, devices and batches (``run.py``)."""

from .recipe import load_recipe, parse_shard, settings
from .run import run_recipe
from .tasks import TASKS, preprocess_image

__all__ = ["load_recipe", "parse_shard", "settings", "run_recipe", "TASKS", "preprocess_image"]
