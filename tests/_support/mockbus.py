"""The ``mockbus`` layer's guard: no dbus-daemon to reach, and TensorFlow never imported.

Tests marked ``mockbus`` use the in-memory bus
(:mod:`imagecluster.plugin_api._mockbus`) and fake workers. The guard makes
sure they would pass on a machine without dbus-daemon and without
TensorFlow: ``PATH`` holds no ``dbus-daemon``, no session bus address is
set, and ``tensorflow`` is not imported before or after the test.
"""

import os
import shutil
import sys

import pytest


@pytest.fixture(autouse=True)
def mockbus_guard(request, tmp_path_factory, monkeypatch):
    """For a ``mockbus`` test: hide every bus and dbus-daemon; fail if TensorFlow was imported."""
    if request.node.get_closest_marker("mockbus") is None:
        yield
        return
    bare = tmp_path_factory.mktemp("no-dbus")
    monkeypatch.setenv("PATH", os.fspath(bare))
    monkeypatch.setenv("XDG_RUNTIME_DIR", os.fspath(bare))
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.delenv("DBUS_STARTER_ADDRESS", raising=False)
    assert shutil.which("dbus-daemon") is None
    assert "tensorflow" not in sys.modules, "TensorFlow was imported before a mockbus test"
    yield
    assert "tensorflow" not in sys.modules, "a mockbus test imported TensorFlow"
