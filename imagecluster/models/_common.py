"""Helpers shared by the fingerprint models; none of them imports TensorFlow at import time."""

import contextlib
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from .._exceptions import InvalidParameter
from .._validation import DEFAULT_BATCH_SIZE

logger = logging.getLogger(__name__)

#: Photos per compiled call; large inputs are split into chunks of this size.
BATCH_SIZE = DEFAULT_BATCH_SIZE


def default_cache_dir() -> Path:
    """Folder where models keep converted weights between runs.

    Reads the environment at call time: ``$XDG_CACHE_HOME/imagecluster`` when
    ``XDG_CACHE_HOME`` is set to an absolute path (the XDG spec says to ignore
    relative ones), otherwise ``~/.cache/imagecluster``.

    Returns
    -------
    path : pathlib.Path
        The folder; it is not created here.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "imagecluster"


def import_tensorflow():
    """Import TensorFlow and Keras quietly and return ``(tf, keras)``.

    TF_CPP_MIN_LOG_LEVEL does not reach what TensorFlow's C++ side prints
    while it loads ("oneDNN custom operations are on", twice, each after
    absl's "All log messages before absl::InitializeLog()"), so the import
    runs with file descriptor 2 caught: those lines are logged at debug
    level (``-vv``), anything else as a warning.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_to_log():
        import keras
        import tensorflow as tf

    return tf, keras


# Native lines that are only information: TFLite's "INFO: ...", absl's notice
# that logging is not set up yet, and absl-format INFO and WARNING lines
# ("I0000 00:00:...", "W0000 ..."), the levels TF_CPP_MIN_LOG_LEVEL=2 hides.
_NATIVE_CHATTER = re.compile(r"INFO: |WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} ")


@contextlib.contextmanager
def native_stderr_to_log():
    """Catch what native code writes to file descriptor 2 and log it at debug level.

    TFLite's C++ side prints "INFO: Created TensorFlow Lite XNNPACK delegate"
    straight to stderr, past Python's logging; a user of the command line
    should not see it. Anything else written there is kept as a warning.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a daemon without one): nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines():
                if _NATIVE_CHATTER.match(line):
                    logger.debug("%s", line)
                elif line.strip():
                    logger.warning("%s", line)


def check_images(images, input_size):
    """Return ``images`` if it is a uint8 batch of RGB squares, else raise.

    Parameters
    ----------
    images : numpy.ndarray of shape (n_images, input_size, input_size, 3)
        The batch, dtype ``uint8``.
    input_size : int
        Expected side in pixels.

    Returns
    -------
    images : numpy.ndarray of shape (n_images, input_size, input_size, 3)
        The same array, C-contiguous.

    Raises
    ------
    InvalidParameter
        Wrong type, dtype or shape.
    """
    if not isinstance(images, np.ndarray):
        raise InvalidParameter(f"images must be a numpy array, not {type(images).__name__}")
    if images.dtype != np.uint8:
        raise InvalidParameter(f"images must have dtype uint8, not {images.dtype}")
    expected = (input_size, input_size, 3)
    if images.ndim != 4 or images.shape[1:] != expected:
        raise InvalidParameter(
            f"images must have shape (n_images, {input_size}, {input_size}, 3), "
            f"not {images.shape}"
        )
    return np.ascontiguousarray(images)


def l2_normalise(vectors):
    """Scale each row to unit length in float32; an all-zero row stays zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out = np.zeros_like(vectors)
    np.divide(vectors, norms, out=out, where=norms > 0)
    return out


def run_batched(function, images, dim, *, batch_size=BATCH_SIZE):
    """Apply ``function`` to ``images`` in chunks and stack the float32 results.

    Parameters
    ----------
    function : callable
        Takes a uint8 array of shape (n, size, size, 3) with ``n <= batch_size``
        and returns an array of shape (n, dim).
    images : numpy.ndarray of shape (n_images, size, size, 3)
        Checked input batch.
    dim : int
        Output width.
    batch_size : int, default=BATCH_SIZE
        Chunk length.

    Returns
    -------
    out : numpy.ndarray of shape (n_images, dim)
        float32 results, in input order.
    """
    out = np.empty((len(images), dim), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        out[start : start + len(chunk)] = np.asarray(function(chunk))
    return out


def write_atomically(path, write):
    """Write a file via ``write(tmp_path)`` into a sibling temp file, then rename it.

    A reader never sees a half-written ``path``. Returns ``True`` on success;
    any failure (read-only cache, full disk) is logged as a warning and
    returns ``False``, because a cache that cannot be written only costs time.
    """
    path = Path(path)
    # Keras picks the format from the suffix, so the temp name keeps it.
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except Exception as exc:  # noqa: BLE001 - a cache write must never be fatal
        logger.warning("could not write model cache %s: %s", path, exc)
        try:
            tmp.unlink()
        except OSError:
            pass
        return False
    return True
