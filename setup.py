"""What pyproject.toml cannot say: the packages are the ones found under taskcomp/ plus taskcomp.recipes, which
lives at the repository's top level (recipes/; pyproject.toml maps it there) and which a search of taskcomp/ cannot
find. Everything else is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

setup(packages=[*find_namespace_packages(include=["taskcomp", "taskcomp.*"]), "taskcomp.recipes"])
