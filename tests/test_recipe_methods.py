"""A recipe's methods are decoded from their names in one place (taskcomp.runner.recipe.method_kind) and parsed
once into RecipeMethod objects."""

import pytest

from taskcomp.runner.recipe import (
    METHOD_KEYS,
    METHOD_KINDS,
    RecipeError,
    RecipeMethod,
    is_map_method,
    is_optimized,
    is_predicted,
    method_kind,
    parse_methods,
    settings,
    validate_recipe,
)


@pytest.mark.parametrize(
    "name, kind",
    [
        ("original", "original"),
        ("uniform", "uniform"),
        ("gradcam", "baseline"),
        ("saliency", "baseline"),
        ("box_mask", "baseline"),
        ("jpeg", "jpeg"),
        ("webp", "webp"),
        ("task_aware", "optimized"),
        ("task_aware_label_free", "optimized"),
        ("predicted", "predicted"),
        ("predicted_refined", "predicted"),
        ("task_awareness", None),
        ("predictedx", None),
        ("nonesuch", None),
        ("Uniform", None),
    ],
)
def test_method_kind_decodes_a_name_once(name, kind):
    assert method_kind(name) == kind
    assert kind is None or kind in METHOD_KINDS
    assert is_optimized(name) == (kind == "optimized")
    assert is_predicted(name) == (kind == "predicted")
    assert is_map_method(name) == (kind in ("optimized", "predicted"))


def test_parse_methods_keeps_the_recipes_order_names_and_keys():
    recipe = validate_recipe(
        {
            "name": "r",
            "data": "d",
            "methods": {
                "original": None,
                "uniform": {"q": [0.1, 0.5]},
                "task_aware_free": {"lambda": [1], "use_label": False},
                "predicted": {"lambda": [0.5]},
                "jpeg": {"quality": [10]},
            },
        }
    )
    methods = parse_methods(recipe)
    assert [(m.name, m.kind) for m in methods] == [
        ("original", "original"),
        ("uniform", "uniform"),
        ("task_aware_free", "optimized"),
        ("predicted", "predicted"),
        ("jpeg", "jpeg"),
    ]
    assert methods[0].spec == {} and methods[2].spec == {"lambda": [1], "use_label": False}
    assert [m.makes_map for m in methods] == [False, False, True, True, False]
    assert methods[2].keys is METHOD_KEYS["task_aware"] and methods[3].keys is METHOD_KEYS["predicted"]
    assert methods[4].keys is METHOD_KEYS["jpeg"]
    # the points follow the same decoding
    assert [m for m, _, _ in settings(recipe["methods"])] == [
        "original",
        "uniform",
        "uniform",
        "task_aware_free",
        "predicted",
        "jpeg",
    ]
    with pytest.raises(Exception):
        methods[0].kind = "uniform"  # frozen


def test_parse_methods_refuses_a_name_no_recipe_may_use():
    with pytest.raises(RecipeError, match="unknown method 'task_awareness'"):
        parse_methods({"methods": {"task_awareness": {"lambda": [1]}}})
    assert RecipeMethod("uniform", "uniform") == RecipeMethod("uniform", "uniform", {})
