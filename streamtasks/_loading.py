"""Import an :class:`App` from a ``module:attribute`` string (as the CLI receives it)."""

from __future__ import annotations

import importlib
import os
import sys

from streamtasks.app import App
from streamtasks.errors import ConfigError

__all__ = ["load_app"]


def load_app(spec: str) -> App:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"app {spec!r} must look like 'package.module:app'")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: modules next to you are importable
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(
                f"cannot import {module_name!r} (from app {spec!r}): run from the folder that "
                "contains it or install the package"
            ) from exc
        raise
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, App):
        raise ConfigError(f"{spec!r} is a {type(obj).__name__}, not a streamtasks App")
    return obj
