"""Tests for imagecluster.models: real weights, real photos, real files."""

import importlib
import logging
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagecluster._exceptions import InvalidParameter, ModelError
from imagecluster.models import DEFAULT_MODEL, MODEL_NAMES, FingerprintModel, Lite0Model, default_cache_dir, load_model
from imagecluster.models._common import l2_normalise
from imagecluster.models._lite0 import _default_weights_path
from imagecluster.models._torch_pickle import load_legacy_state_dict

DATA = Path(__file__).parent / "data"
DOG_CLASSES = range(151, 269)  # ImageNet 151..268 are dog breeds
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _photo(name, box=None, size=224):
    image = Image.open(DATA / name).convert("RGB")
    if box is not None:
        image = image.crop(box)
    return np.asarray(image.resize((size, size), Image.BILINEAR))


@pytest.fixture(scope="session")
def xdg_cache(tmp_path_factory):
    """An XDG cache home shared by the session, so lite0 is converted once."""
    return tmp_path_factory.mktemp("xdg")


@pytest.fixture(scope="session")
def lite0(xdg_cache):
    return Lite0Model.load(cache_dir=xdg_cache / "imagecluster")


@pytest.fixture
def lite0_cache_file(lite0, xdg_cache):
    (path,) = (xdg_cache / "imagecluster").glob("lite0-*.tflite")
    return path


# --- public surface -------------------------------------------------------------


def test_constants():
    assert MODEL_NAMES == ("lite0", "vgg16")
    assert DEFAULT_MODEL == "lite0"


def test_import_does_not_import_tensorflow():
    code = "import sys, imagecluster.models; assert 'tensorflow' not in sys.modules; " \
           "assert 'keras' not in sys.modules"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


@pytest.mark.parametrize("name", ["resnet", "LITE0", "", None, 3])
def test_unknown_model_name(name):
    with pytest.raises(InvalidParameter, match="lite0, vgg16"):
        load_model(name)


def test_bad_option_types(tmp_path):
    with pytest.raises(InvalidParameter):
        load_model("lite0", weights=42)
    with pytest.raises(InvalidParameter):
        load_model("lite0", cache_dir=["x"])
    with pytest.raises(InvalidParameter, match="vgg16"):
        load_model("lite0", weights="random")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_missing_weights_file(name, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(name, weights=tmp_path / "nope.h5", cache_dir=tmp_path)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "imagecluster"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "imagecluster"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "imagecluster"


def test_l2_normalise_keeps_zero_rows():
    out = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


# --- lite0 ---------------------------------------------------------------------


def test_lite0_classifies_dog_and_cat(lite0):
    logits = lite0.classify(np.stack([_photo("dog.jpg"), _photo("cat.jpg")]))
    assert logits.shape == (2, 1000)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    dog, cat = probs.argmax(axis=1)
    assert dog in DOG_CLASSES
    assert cat in CAT_CLASSES
    assert probs[1, CAT_CLASSES].sum() > 0.9
    assert probs[0, DOG_CLASSES].sum() > 0.5


def test_lite0_fingerprints(lite0):
    assert isinstance(lite0, FingerprintModel)
    assert (lite0.name, lite0.dim, lite0.input_size) == ("lite0", 1280, 224)
    images = np.stack([
        _photo("dog.jpg", box=(0, 0, 280, 240)),
        _photo("dog.jpg", box=(40, 0, 320, 240)),
        _photo("cat.jpg"),
    ])
    fps = lite0.fingerprint(images)
    assert fps.shape == (3, 1280) and fps.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fps, axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(fps, lite0.fingerprint(images))  # deterministic
    # batch composition does not matter (the interpreter is resized per call)
    np.testing.assert_allclose(lite0.fingerprint(images[2:]), fps[2:], atol=1e-5)
    crops, dog_cat = fps[0] @ fps[1], fps[0] @ fps[2]
    assert crops > dog_cat + 0.2


def test_lite0_fingerprints_are_those_the_stores_hold():
    """Fingerprints live in stores for months: the pipeline must keep making the same ones.

    If this fails after a deliberate change to decoding, preprocessing, the
    model or its conversion, old and new fingerprints would be mixed in every
    user's store: give the store's model key a revision (so old entries are
    fingerprinted again) before updating tests/data/lite0_reference.npy.
    """
    import imagecluster

    reference = np.load(DATA / "lite0_reference.npy", allow_pickle=False).astype(np.float32)
    photos = [DATA / "dog.jpg", DATA / "cat.jpg"]
    got = imagecluster.fingerprints(photos)
    similarity = [float(got[photo] @ ref) for photo, ref in zip(photos, reference)]
    assert min(similarity) > 0.999, similarity


def test_lite0_batches_larger_than_chunk(lite0):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(35, 224, 224, 3), dtype=np.uint8)
    fps = lite0.fingerprint(images)
    assert fps.shape == (35, 1280)
    np.testing.assert_allclose(lite0.fingerprint(images[33:]), fps[33:], atol=1e-5)
    assert lite0.fingerprint(images[:0]).shape == (0, 1280)


@pytest.mark.parametrize("bad", [
    np.zeros((1, 224, 224, 3), dtype=np.float32),
    np.zeros((224, 224, 3), dtype=np.uint8),
    np.zeros((1, 100, 100, 3), dtype=np.uint8),
    [[0]],
])
def test_lite0_rejects_bad_images(lite0, bad):
    with pytest.raises(InvalidParameter):
        lite0.fingerprint(bad)


def test_lite0_loads_from_xdg_cache(lite0_cache_file, xdg_cache, monkeypatch, caplog):
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg_cache))
    before = lite0_cache_file.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="imagecluster.models"):
        model = load_model()
    assert isinstance(model, Lite0Model)
    assert "converting" not in caplog.text
    assert lite0_cache_file.stat().st_mtime_ns == before


@pytest.mark.parametrize("damage", ["truncate", "valid-header-garbage"])
def test_lite0_damaged_cache_is_rebuilt(lite0, lite0_cache_file, tmp_path, caplog, damage):
    cache = tmp_path / lite0_cache_file.name
    data = lite0_cache_file.read_bytes()
    if damage == "truncate":
        cache.write_bytes(data[: len(data) // 2])
    else:
        import hashlib

        garbage = b"\x00" * 64 + b"not a flatbuffer" * 100
        head = data[: data.index(b"\n") + 1]
        cache.write_bytes(head + hashlib.sha256(garbage).digest() + garbage)
    with caplog.at_level(logging.WARNING, logger="imagecluster.models"):
        model = load_model("lite0", cache_dir=tmp_path)
    assert "rebuilding" in caplog.text
    assert cache.read_bytes() == data
    image = _photo("cat.jpg")[None]
    np.testing.assert_allclose(model.fingerprint(image), lite0.fingerprint(image), atol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- vgg16 ---------------------------------------------------------------------


def test_vgg16_random_weights():
    model = load_model("vgg16", weights="random")
    assert isinstance(model, FingerprintModel)
    assert (model.name, model.dim, model.input_size) == ("vgg16", 4096, 224)
    fps = model.fingerprint(np.stack([_photo("dog.jpg"), _photo("cat.jpg")]))
    assert fps.shape == (2, 4096) and fps.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fps, axis=1), 1.0, rtol=1e-5)


def test_vgg16_bad_weights_file(tmp_path):
    bad = tmp_path / "vgg16.weights.h5"
    bad.write_bytes(b"this is not HDF5")
    with pytest.raises(ModelError, match="could not load VGG16 weights"):
        load_model("vgg16", weights=bad)


# --- legacy torch files --------------------------------------------------------


def test_real_state_dict():
    state = load_legacy_state_dict(_default_weights_path())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.weight"].dtype == np.float32
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert all(np.isfinite(v).all() for v in state.values())


def _op_str(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _op_int(value):
    return b"J" + struct.pack("<i", value)


def _op_tuple(items):
    return b"(" + b"".join(items) + b"t"


def _tensor(key, storage_type, numel, offset, size, stride):
    pid = _op_tuple([_op_str("storage"), b"ctorch\n" + storage_type + b"\n", _op_str(key),
                     _op_str("cpu"), _op_int(numel), b"N"]) + b"Q"
    args = [pid, _op_int(offset), _op_tuple(map(_op_int, size)),
            _op_tuple(map(_op_int, stride)), b"\x89", b"ccollections\nOrderedDict\n)R"]
    return b"ctorch._utils\n_rebuild_tensor_v2\n" + _op_tuple(args) + b"R"


def _legacy_file(path, state_pickle, storages):
    """Write a legacy torch file; ``storages`` maps key -> numpy array."""
    with open(path, "wb") as file:
        file.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
        file.write(pickle.dumps(1001, protocol=2))
        file.write(pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2))
        file.write(state_pickle)
        file.write(pickle.dumps(list(storages), protocol=2))
        for array in storages.values():
            file.write(struct.pack("<q", array.size) + array.tobytes())


def _state_pickle(entries):
    body = b"".join(_op_str(name) + tensor for name, tensor in entries)
    return b"\x80\x02ccollections\nOrderedDict\n)R(" + body + b"u."


def test_views_offsets_and_shared_storages(tmp_path):
    floats = np.arange(12, dtype="<f4")
    longs = np.array([7], dtype="<i8")
    path = tmp_path / "views.pth"
    _legacy_file(path, _state_pickle([
        ("full", _tensor("s1", b"FloatStorage", 12, 0, (3, 4), (4, 1))),
        ("transposed", _tensor("s1", b"FloatStorage", 12, 2, (2, 3), (1, 2))),
        ("scalar", _tensor("s2", b"LongStorage", 1, 0, (), ())),
    ]), {"s1": floats, "s2": longs})
    state = load_legacy_state_dict(path)
    np.testing.assert_array_equal(state["full"], floats.reshape(3, 4))
    np.testing.assert_array_equal(state["transposed"], [[2, 4, 6], [3, 5, 7]])
    assert state["scalar"].shape == () and state["scalar"] == 7
    assert state["full"].flags.writeable and state["full"].flags.c_contiguous


def test_view_beyond_storage(tmp_path):
    path = tmp_path / "bad.pth"
    _legacy_file(path, _state_pickle([
        ("x", _tensor("s1", b"FloatStorage", 4, 2, (2, 2), (2, 1))),
    ]), {"s1": np.zeros(4, dtype="<f4")})
    with pytest.raises(ModelError, match="beyond storage"):
        load_legacy_state_dict(path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["first", "state"])
def test_evil_pickle_is_refused(tmp_path, where):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Evil(marker), protocol=2)
    path = tmp_path / "evil.pth"
    if where == "first":
        path.write_bytes(evil)
    else:
        _legacy_file(path, evil, {})
    with pytest.raises(ModelError, match="refusing to load global"):
        load_legacy_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [
    ("builtins", "eval"), ("torch._utils", "_rebuild_parameter"), ("torch", "load"),
    ("collections", "defaultdict"),
])
def test_other_globals_are_refused(tmp_path, module, name):
    path = tmp_path / "global.pth"
    _legacy_file(path, b"\x80\x02c" + f"{module}\n{name}\n.".encode(), {})
    with pytest.raises(ModelError, match=f"refusing to load global {module}.{name}"):
        load_legacy_state_dict(path)


def test_build_onto_allowed_global_is_refused(tmp_path):
    path = tmp_path / "build.pth"
    state = b"N}" + _op_str("__kwdefaults__") + b"}s\x86b."  # BUILD (None, {...})
    _legacy_file(path, b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n" + state, {})
    with pytest.raises(ModelError, match="refusing to BUILD"):
        load_legacy_state_dict(path)


@pytest.mark.parametrize("keep", [10, 30_000, 1_000_000])
def test_truncated_file(tmp_path, keep):
    path = tmp_path / "short.pth"
    with open(_default_weights_path(), "rb") as file:
        path.write_bytes(file.read(keep))
    with pytest.raises(ModelError):
        load_legacy_state_dict(path)


def test_zip_format_is_refused(tmp_path):
    import zipfile

    path = tmp_path / "new.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"")
    with pytest.raises(ModelError, match="zip-format"):
        load_legacy_state_dict(path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    _legacy_file(path, pickle.dumps([1, 2], protocol=2), {})
    with pytest.raises(ModelError, match="not a state dict"):
        load_legacy_state_dict(path)


def test_lite0_rejects_foreign_weights(tmp_path):
    path = tmp_path / "other.pth"
    _legacy_file(path, _state_pickle([
        ("x", _tensor("s1", b"FloatStorage", 4, 0, (4,), (1,))),
    ]), {"s1": np.zeros(4, dtype="<f4")})
    with pytest.raises(ModelError, match="not EfficientNet-Lite0"):
        load_model("lite0", weights=path, cache_dir=tmp_path)


def test_no_tensorflow_here_refuses_the_import_even_after_an_earlier_one(lite0, no_tensorflow_here):
    """The fixture the next test relies on: ``lite0`` has imported TensorFlow in this process already."""
    with pytest.raises(ImportError, match="only a child may import it"):
        importlib.import_module("tensorflow.lite")
    assert no_tensorflow_here.attempts == ["tensorflow"]  # the parent first
    no_tensorflow_here.attempts.clear()  # expected here: the fixture's own check at teardown passes
