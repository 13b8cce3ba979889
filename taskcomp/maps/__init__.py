"""Quality maps: generators (uniform, gradient, blobs, regions, halves), resizing, checks and map files; making
maps for a task (optimised, predicted, at a target bpp) is :mod:`taskcomp.mapmaker`.

A quality map is a float tensor (B, 1, H, W) or array (H, W) with values in [0, 1]: 0 is the lowest
rate, 1 the highest.
"""

from .files import EXACT_MAP_SUFFIXES, load_map, save_map, save_map_exact
from .generators import (
    MapError,
    blob_map,
    check_map,
    gradient_map,
    half_map,
    map_at_size,
    random_training_map,
    region_map,
    uniform_map,
)

__all__ = [
    "uniform_map",
    "map_at_size",
    "gradient_map",
    "blob_map",
    "region_map",
    "half_map",
    "random_training_map",
    "load_map",
    "save_map",
    "save_map_exact",
    "check_map",
    "MapError",
    "EXACT_MAP_SUFFIXES",
]
