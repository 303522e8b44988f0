"""Make the streamtasks pytest plugin available whether or not the package is installed; and
the ``node_packages`` fixture shared by the tests that use a non-Python Avro library/client.

Installed (``pip install -e .``), pytest loads ``streamtasks.testing`` itself through the
``pytest11`` entry point. Run from a bare checkout (or with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``)
it does not, so register it here, but only when no one has: registering the same module twice
(entry point name ``streamtasks`` + module name) is an error in pytest. ``-p no:streamtasks``
is respected.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_PLUGIN = "streamtasks.testing"
NODE_DIR = Path(__file__).resolve().parent / "node"


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    module = sys.modules.get(_PLUGIN)
    if module is not None and manager.is_registered(module):
        return
    if manager.is_blocked("streamtasks") or manager.is_blocked(_PLUGIN):
        return
    manager.import_plugin(_PLUGIN)


@pytest.fixture(scope="session")
def node_packages() -> Path:
    """tests/node with avsc and kafkajs installed from the npm registry, or a skip saying why."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed: cannot test with the avsc/kafkajs libraries")
    modules = NODE_DIR / "node_modules"
    if not ((modules / "avsc").exists() and (modules / "kafkajs").exists()):
        proc = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR)],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        if proc.returncode != 0:
            pytest.skip(f"npm install of avsc/kafkajs failed (offline?): {proc.stderr[-300:]}")
    return NODE_DIR
