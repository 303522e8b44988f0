"""Make the streamtasks pytest plugin available whether or not the package is installed.

Installed (``pip install -e .``), pytest loads ``streamtasks.testing`` itself through the
``pytest11`` entry point. Run from a bare checkout (or with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``)
it does not, so register it here, but only when no one has: registering the same module twice
(entry point name ``streamtasks`` + module name) is an error in pytest. ``-p no:streamtasks``
is respected.
"""

from __future__ import annotations

import sys

import pytest

_PLUGIN = "streamtasks.testing"


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    module = sys.modules.get(_PLUGIN)
    if module is not None and manager.is_registered(module):
        return
    if manager.is_blocked("streamtasks") or manager.is_blocked(_PLUGIN):
        return
    manager.import_plugin(_PLUGIN)
