"""Task objectives: ``create_objective(name, **kw)``; one module per task."""

from .base import Objective, create_objective, list_objectives, objective_arguments, objective_class, register_objective
from .classification import ClassificationObjective
from .detection import DetectionObjective
from .saliency import SaliencyObjective, grad_cam, image_cam
from .text import TextObjective
from .weighted import WeightedObjective, parse_task_spec

__all__ = [
    "Objective",
    "create_objective",
    "list_objectives",
    "objective_arguments",
    "objective_class",
    "register_objective",
    "ClassificationObjective",
    "SaliencyObjective",
    "grad_cam",
    "image_cam",
    "TextObjective",
    "DetectionObjective",
    "WeightedObjective",
    "parse_task_spec",
]
