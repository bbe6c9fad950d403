"""VGG16 ``fc2`` fingerprints (4096-d): the model of the original imagecluster.

Keras' ImageNet VGG16 cut after the second fully connected layer, fed with
``keras.applications.vgg16.preprocess_input`` (RGB -> BGR, minus the ImageNet
channel means). It is about 40 times the work of ``lite0`` per photo and kept
for fingerprints compatible with the original tool.
"""

import logging
import threading
from pathlib import Path

from .._exceptions import ModelError
from ._common import check_images, import_tensorflow, l2_normalise, run_batched

__all__ = ["VGG16Model"]

logger = logging.getLogger(__name__)

_INPUT_SIZE = 224
_DIM = 4096
# VGG16 activations are large (411 MB per conv1 tensor at 32 photos); 16 is plenty.
_BATCH_SIZE = 16


def _build_keras(keras, weights):
    """VGG16 up to ``fc2``; ``weights`` is ``"imagenet"``, ``None`` (random) or a path."""
    try:
        full = keras.applications.VGG16(include_top=True, weights=weights)
    except Exception as exc:  # Keras raises bare Exception for a failed download
        if weights == "imagenet":
            raise ModelError(
                "could not get the VGG16 ImageNet weights from Keras (no internet?): "
                "pass a local weights file with weights=PATH (the config option for "
                f"the vgg16 weights); cause: {exc}"
            ) from exc
        raise ModelError(f"could not load VGG16 weights from {weights}: {exc}") from exc
    return keras.Model(full.inputs, full.get_layer("fc2").output, name="vgg16_fc2")


class VGG16Model:
    """VGG16 ``fc2`` fingerprints: 4096-d, L2-normalised.

    Build it with :meth:`load` (or :func:`imagecluster.models.load_model`).
    Calls are serialised with a lock, so one instance may be shared by threads.

    Parameters
    ----------
    keras_model : keras.Model
        VGG16 cut at ``fc2``, taking float RGB images of shape (n, 224, 224, 3)
        after ``keras.applications.vgg16.preprocess_input``.

    Attributes
    ----------
    name : str
        ``"vgg16"``.
    dim : int
        ``4096``.
    input_size : int
        ``224``.
    """

    name = "vgg16"
    dim = _DIM
    input_size = _INPUT_SIZE

    def __init__(self, keras_model):
        tf, keras = import_tensorflow()
        preprocess = keras.applications.vgg16.preprocess_input

        # One trace for every batch length: the batch axis is left open.
        @tf.function(
            input_signature=[tf.TensorSpec((None, _INPUT_SIZE, _INPUT_SIZE, 3), tf.uint8)]
        )
        def features(images):
            return keras_model(preprocess(tf.cast(images, tf.float32)), training=False)

        self._keras_model = keras_model
        self._features = features
        self._lock = threading.Lock()

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"

    @classmethod
    def load(cls, *, weights=None):
        """Build VGG16 cut at ``fc2``.

        Parameters
        ----------
        weights : str or os.PathLike, default=None
            ``None`` for Keras' ImageNet weights (downloaded into
            ``~/.keras/models`` the first time, which needs internet), a path to
            a local Keras weights file of the full VGG16 (for instance
            ``vgg16_weights_tf_dim_ordering_tf_kernels.h5``), or ``"random"``
            for random weights (tests and benchmarks).

        Returns
        -------
        model : VGG16Model

        Raises
        ------
        ModelError
            The download failed or the weights file is missing or unfit.
        """
        if weights is None:
            source = "imagenet"
        elif isinstance(weights, str) and weights == "random":
            source = None
        else:
            path = Path(weights)
            if not path.is_file():
                raise ModelError(f"vgg16 weights file not found: {path}")
            source = str(path)
        _tf, keras = import_tensorflow()
        logger.info("building VGG16 with %s weights", source or "random")
        return cls(_build_keras(keras, source))

    def _run(self, images):
        with self._lock:
            return self._features(images).numpy()

    def fingerprint(self, images):
        """Fingerprint a batch of photos.

        Parameters
        ----------
        images : numpy.ndarray of shape (n_images, 224, 224, 3)
            RGB photos, dtype ``uint8``; split into chunks of 16 internally.

        Returns
        -------
        fingerprints : numpy.ndarray of shape (n_images, 4096)
            float32, each row the L2-normalised ``fc2`` activations.

        Raises
        ------
        InvalidParameter
            ``images`` has the wrong type, dtype or shape.
        """
        images = check_images(images, self.input_size)
        features = run_batched(self._run, images, self.dim, batch_size=_BATCH_SIZE)
        return l2_normalise(features)
