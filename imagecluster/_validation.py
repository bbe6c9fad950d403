"""The checks at imagecluster's public boundary, in one place (as scikit-learn's ``utils/validation.py``).

Every ``check_*`` returns the value normalised (a Python ``float`` or ``int``,
a tuple, ...) or raises :class:`~imagecluster.InvalidParameter` with a
message that names the parameter. The rules are the same everywhere:

* a number is an ``int``, a ``float`` or a NumPy number: ``True`` and
  ``"0.5"`` are not numbers (a command line converts its text first, then
  calls the same check);
* NaN is never in range.

The Python API, the CLI's argument types, the D-Bus service and the plugin
clients all call these. The constants they check against are defined here
once: :data:`MAX_WAIT_SECONDS` and :data:`DEFAULT_BATCH_SIZE`.
"""

import math
import numbers
import os
from collections.abc import Iterable
from pathlib import PurePath, PurePosixPath

import numpy as np

from ._exceptions import InvalidParameter
from ._journal import all_finite, is_relpath

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MAX_WAIT_SECONDS",
    "check_batch_size",
    "check_count",
    "check_int",
    "check_iterable",
    "check_model_key",
    "check_model_name",
    "check_number",
    "check_relpath",
    "check_seconds",
    "check_share",
    "check_sim",
    "check_timeout",
    "check_vector",
    "check_wait",
]

#: Photos sent to the network at once (the CLI, the Python API, the daemon's worker).
DEFAULT_BATCH_SIZE = 32

#: The longest ``WaitIdle`` (``wait_idle``, ``imagecluster remote wait``) may wait, in seconds.
MAX_WAIT_SECONDS = 3600.0


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(value, name):
    """Return ``value`` as a float; InvalidParameter for anything that is not a real number.

    Parameters
    ----------
    value : object
        An int, a float or a NumPy number (not a bool, not a str).
    name : str
        The parameter's name, for the message.

    Returns
    -------
    float
    """
    if not _is_number(value):
        raise InvalidParameter(f"{name} must be a number, got {value!r}")
    return float(value)


def check_share(value, name):
    """Return ``value`` as a finite float >= 0: a ratio of two sizes.

    Parameters
    ----------
    value : float
    name : str
        The parameter's name, for the message.

    Returns
    -------
    float
    """
    share = check_number(value, name)
    if not 0.0 <= share < math.inf:  # also false for NaN
        raise InvalidParameter(f"{name} must be a finite number >= 0, got {value!r}")
    return share


def check_sim(sim):
    """Return the similarity index ``sim`` as a float in 0..1.

    Parameters
    ----------
    sim : float
        Similarity index; NaN, booleans and strings are refused.

    Returns
    -------
    float
    """
    if not _is_number(sim):
        raise InvalidParameter(f"sim must be a number between 0 and 1, got {sim!r}")
    value = float(sim)
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise InvalidParameter(f"sim must be between 0 and 1, got {sim!r}")
    return value


def check_count(value, name, *, minimum=1):
    """Return ``value`` as an int of at least ``minimum``.

    Parameters
    ----------
    value : int
        An int or a NumPy integer (not a bool, not a float).
    name : str
        The parameter's name, for the message.
    minimum : int, default=1
        The smallest value allowed.

    Returns
    -------
    int
    """
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise InvalidParameter(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def check_batch_size(batch_size):
    """Return ``batch_size`` (photos per inference call) as an int >= 1.

    Parameters
    ----------
    batch_size : int

    Returns
    -------
    int
    """
    return check_count(batch_size, "batch_size")


def check_seconds(value, name, *, zero_ok=False):
    """Return a duration as a finite float > 0 (>= 0 with ``zero_ok``).

    Parameters
    ----------
    value : float
        Seconds.
    name : str
        The parameter's name, for the message.
    zero_ok : bool, default=False
        Whether 0 is allowed.

    Returns
    -------
    float
    """
    ok = _is_number(value) and math.isfinite(value) and (value > 0 or (zero_ok and value == 0))
    if not ok:
        raise InvalidParameter(f"{name} must be a number {'>=' if zero_ok else '>'} 0, got {value!r}")
    return float(value)


def check_timeout(timeout, name="timeout"):
    """Return a timeout as a float > 0 seconds, or None (wait forever).

    Parameters
    ----------
    timeout : float or None
        Seconds; infinity is allowed (as None).
    name : str, default="timeout"
        The parameter's name, for the message.

    Returns
    -------
    float or None
    """
    if timeout is None:
        return None
    if not _is_number(timeout):
        raise InvalidParameter(f"{name} must be a number of seconds or None, got {timeout!r}")
    value = float(timeout)
    if math.isnan(value) or value <= 0:
        raise InvalidParameter(f"{name} must be more than 0 seconds, got {timeout!r}")
    return value


def check_wait(seconds, name="timeout"):
    """Return how long ``WaitIdle`` may wait, as a float in 0..:data:`MAX_WAIT_SECONDS`.

    Parameters
    ----------
    seconds : float
    name : str, default="timeout"
        The parameter's name, for the message.

    Returns
    -------
    float
    """
    if not _is_number(seconds):
        raise InvalidParameter(f"{name} must be a number of seconds, got {seconds!r}")
    value = float(seconds)
    if not 0.0 <= value <= MAX_WAIT_SECONDS:  # also false for NaN
        raise InvalidParameter(f"{name} must be between 0 and {MAX_WAIT_SECONDS:g} seconds, got {seconds!r}")
    return value


def check_model_name(model):
    """Return ``model`` if it names a fingerprint model we ship (:data:`imagecluster.models.MODEL_NAMES`).

    Parameters
    ----------
    model : str

    Returns
    -------
    str
    """
    from .models import MODEL_NAMES  # the list lives with the models; importing them loads no TensorFlow

    if not isinstance(model, str) or model not in MODEL_NAMES:
        raise InvalidParameter(f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    return model


# The store's checks (a photo's path relative to its library, a model key, sizes, fingerprints).


def check_relpath(path, what="path"):
    """Normalise a library-relative path to its POSIX str; InvalidParameter otherwise."""
    if isinstance(path, PurePath):
        path = path.as_posix()
    elif isinstance(path, os.PathLike):
        path = os.fspath(path)
    if type(path) is not str:
        raise InvalidParameter(f"{what} must be a str or path, got {type(path).__name__}")
    if is_relpath(path):
        return path
    norm = PurePosixPath(path)
    if norm.is_absolute() or ".." in norm.parts or not norm.parts or "\x00" in path:
        raise InvalidParameter(f"{what} must be relative to the library, without '..': {path!r}")
    return norm.as_posix()


def check_model_key(model):
    """Return ``model`` if it is a non-empty str; InvalidParameter otherwise."""
    if type(model) is not str or not model:
        raise InvalidParameter(f"model must be a non-empty str, got {model!r}")
    return model


def check_int(value, what, *, minimum=None):
    """Return ``value`` as a Python int (not bool) that fits in int64, at least ``minimum``; InvalidParameter otherwise.

    File sizes and times are kept in int64 columns (as ``os.stat`` gives them).
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidParameter(f"{what} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise InvalidParameter(f"{what} must be >= {minimum}, got {value}")
    if not -(1 << 63) <= value < 1 << 63:
        raise InvalidParameter(f"{what} must fit in 64 bits, got {value}")
    return int(value)


def check_vector(fingerprint, dtype, path):
    """Cast one fingerprint to the store dtype: 1-D, real, finite (also after the cast)."""
    try:
        a = np.asarray(fingerprint)
    except (TypeError, ValueError) as exc:
        raise InvalidParameter(f"fingerprint of {path!r} is not an array: {exc}") from exc
    if a.ndim != 1 or a.size == 0 or a.dtype.kind not in "fiu":
        raise InvalidParameter(f"fingerprint of {path!r} must be a non-empty 1-D real array, got {a.dtype} {a.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        cast = a.astype(dtype)
    if not np.isfinite(a).all() or not all_finite(cast):
        raise InvalidParameter(f"fingerprint of {path!r} has values that are not finite in {dtype.name}")
    return cast


def check_iterable(value, what):
    """Return ``value`` if it is an iterable other than str/bytes; InvalidParameter otherwise."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidParameter(f"{what} must be an iterable of items, got {type(value).__name__}")
    return value
