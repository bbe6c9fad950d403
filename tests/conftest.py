"""Shared fixtures: real photos made from the two packaged test photos, and hygiene checks."""

import importlib.abc
import sys

import pytest

# Autouse fixtures: no leaked threads or child processes.
from _support.hygiene import no_leaked_processes, no_leaked_processes_at_all, no_leaked_threads, no_leaked_workers  # noqa: F401
from _support.mockbus import mockbus_guard  # noqa: F401  (a fixture, autouse)
from _support.photos import DATA, PHOTOS, camera_moved


def pytest_collection_modifyitems(items):
    """Run the ``mockbus`` layer first, in its own order.

    Its tests must run in a process that has not imported TensorFlow (the
    guard checks), and many later tests load the model in-process. First,
    they also give the fastest answer when something basic broke.
    """
    items.sort(key=lambda item: item.get_closest_marker("mockbus") is None)  # stable: order kept within each


@pytest.fixture
def make_library(tmp_path):
    """Build a library: {relative name: source photo} -> folder of real JPEG shots."""

    def make(layout, root=None):
        lib = root or tmp_path / "photos"
        for seed, (name, source) in enumerate(sorted(layout.items())):
            path = lib / name
            path.parent.mkdir(parents=True, exist_ok=True)
            camera_moved(DATA / source, seed).save(path, quality=88)
        return lib

    return make


@pytest.fixture(scope="module")
def lite0():
    """The default model, loaded once per test module (its weights converted from the shipped package)."""
    from imagecluster.models import load_model

    return load_model("lite0")


@pytest.fixture
def burst_library(make_library):
    """Three shots of a dog and three of a cat, in nested year/month folders."""
    return make_library({name: source for name, source in PHOTOS.items() if name != "2024/café_ß.jpg"})




class _TensorFlowImports(importlib.abc.MetaPathFinder):
    """Refuses, and records, every import of TensorFlow in this process."""

    def __init__(self):
        self.attempts = []

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            self.attempts.append(name)
            raise ImportError(f"{name} imported in the test process, where only a child may import it")
        return None


@pytest.fixture
def no_tensorflow_here(monkeypatch):
    """Fail the test if this process imports TensorFlow during it, whatever tests ran before.

    For code that promises only a child process (the daemon's spawned
    worker) loads the model. ``"tensorflow" not in sys.modules`` proves
    nothing once an earlier test in the session imported it, so it and its
    submodules are taken out of ``sys.modules`` for the test, and any import
    of them is refused and recorded. Spawned children start a fresh interpreter.
    """
    finder = _TensorFlowImports()
    for name in [n for n in sys.modules if n == "tensorflow" or n.startswith("tensorflow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    yield finder
    assert not finder.attempts, f"TensorFlow was imported in the test process: {finder.attempts}"
