"""Recipe runner: recipes and their methods parsed once (``recipe.py``), task adapters (``tasks.py``), data
layouts (``layouts.py``), the runner that spreads a recipe's points over processes, devices and batches
(``run.py``), and the run's own output: its report (``report.py``: tables, plots, ``summary.json``) and its example
images and gallery (``gallery.py``).

The runner sits above map making, predictors, the optimiser, objectives and the codec, and imports them; nothing
below it imports the runner (pyproject.toml's import-linter contracts). The pictures of a single map it draws
with are :mod:`taskcomp.pictures`, below it, shared with the CLI and the demo."""

from .recipe import RecipeMethod, load_recipe, parse_methods, parse_shard, settings
from .run import run_recipe
from .tasks import TASKS, preprocess_image

__all__ = [
    "load_recipe",
    "parse_shard",
    "settings",
    "run_recipe",
    "TASKS",
    "preprocess_image",
    "RecipeMethod",
    "parse_methods",
]
