"""Shared fixtures: real photos made from the two packaged test photos, and hygiene checks."""

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


