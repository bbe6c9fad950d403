"""``_pipeline``: decoding ahead in threads, batches in order, failures reported; a fake model, no TensorFlow."""


import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

from imagecluster import InvalidParameter
from imagecluster._pipeline import LazyModel, check_batch_size, iter_fingerprint_batches, resolve_model

pytestmark = pytest.mark.mockbus


class MeanColour:
    """A model whose fingerprint is an image's mean colour: enough to tell photos apart, no network."""

    name = "mean-colour"
    input_size = 16

    def __init__(self):
        self.batches = []

    def fingerprint(self, images):
        self.batches.append(len(images))
        return images.reshape(len(images), -1, 3).mean(axis=1).astype(np.float32)


@pytest.fixture
def photos(tmp_path):
    paths = []
    for i in range(7):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (40, 30), (i * 30, 0, 0)).save(path)
        paths.append(path)
    return paths


def test_batches_keep_the_order_asked_for(photos):
    model = MeanColour()
    batches = list(iter_fingerprint_batches(photos, LazyModel(model), batch_size=3, workers=2))
    assert model.batches == [3, 3, 1]
    assert [p for b in batches for p in b.paths] == [str(p) for p in photos]
    reds = [round(float(v[0])) for b in batches for v in b.fingerprints]
    assert reds == [i * 30 for i in range(7)]


def test_a_broken_photo_is_a_failure_in_its_batch(photos, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    done = []
    batches = list(iter_fingerprint_batches([photos[0], tmp_path / "bad.jpg", photos[1]], LazyModel(MeanColour()),
                                            batch_size=8, progress=done.append))
    (batch,) = batches
    assert batch.paths == [str(photos[0]), str(photos[1])] and len(batch.fingerprints) == 2
    assert [f.path for f in batch.failures] == [str(tmp_path / "bad.jpg")] and batch.failures[0].reason
    assert not batch.failures[0].reason.startswith(str(tmp_path))  # the path is not repeated in the reason
    assert done == [3]


def test_nothing_decodable_never_loads_the_model(tmp_path, no_tensorflow_here):
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    lazy = LazyModel("lite0")
    (batch,) = iter_fingerprint_batches([tmp_path / "bad.jpg"], lazy)
    assert batch.paths == [] and len(batch.failures) == 1
    assert not lazy.is_loaded and not no_tensorflow_here.attempts


def test_lazy_model_by_name_and_by_object():
    assert LazyModel("lite0").input_size == 224 and LazyModel("lite0").name == "lite0"
    model = MeanColour()
    assert LazyModel(model).loaded is model and LazyModel(model).input_size == 16
    with pytest.raises(InvalidParameter, match="unknown model"):
        LazyModel("resnet")
    lazy = LazyModel("vgg16")
    assert resolve_model(lazy) is lazy and resolve_model(None).name == "lite0"


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "32", None])
def test_check_batch_size_refuses(bad):
    with pytest.raises(InvalidParameter):
        check_batch_size(bad)


def test_check_batch_size_accepts_numpy_ints():
    assert check_batch_size(np.int32(8)) == 8 and type(check_batch_size(np.int32(8))) is int


def _decoding_threads(photos, monkeypatch):
    """Names of the threads that decoded ``photos`` with the default pool size (each decode waits a little,
    so that a pool of two really uses both)."""
    from imagecluster import _pipeline

    seen, real = set(), _pipeline.load_image

    def recording(path, size):
        seen.add(threading.current_thread().name)
        time.sleep(0.05)
        return real(path, size=size)

    monkeypatch.setattr(_pipeline, "load_image", recording)
    list(iter_fingerprint_batches(photos, LazyModel(MeanColour()), batch_size=2))
    return seen


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to restrict to one")
def test_decoding_threads_default_to_the_cores_this_process_may_use(photos, monkeypatch):
    """Under taskset or a container's cpuset, os.cpu_count() still counts the machine; the pool must not."""
    allowed = os.sched_getaffinity(0)
    assert len(_decoding_threads(photos, monkeypatch)) >= 2  # two cores: two decoding threads
    os.sched_setaffinity(0, {min(allowed)})  # this thread only; the pool's threads inherit it
    try:
        assert os.cpu_count() >= 2
        assert _decoding_threads(photos, monkeypatch) == {"imagecluster-decode_0"}
    finally:
        os.sched_setaffinity(0, allowed)
