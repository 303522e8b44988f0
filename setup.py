"""The package list only (everything else is in pyproject.toml): every package found under
streamtasks/, so a new subpackage cannot be left out of the wheel, plus the top-level schemas/
folder, which ships as ``streamtasks._schemas`` (``[tool.setuptools.package-dir]``).

pyproject's ``[tool.setuptools.packages.find]`` cannot add a package that lives outside the
searched tree, hence this file."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["streamtasks", "streamtasks.*"]), "streamtasks._schemas"])
