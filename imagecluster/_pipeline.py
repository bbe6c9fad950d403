"""Photos in, fingerprints out: decoding in threads overlapped with batched inference.

Pillow releases the GIL while it decodes, so a few threads decode the next
photos while the network works on the current batch. The model is loaded only
when the first photo has been decoded: a run with nothing new to fingerprint
never imports TensorFlow.
"""

import collections
import functools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ._cores import usable_cores
from ._exceptions import NotAnImage
from ._validation import DEFAULT_BATCH_SIZE, check_batch_size, check_model_name  # noqa: F401  (check_batch_size: re-exported)
from .images import load_image, load_image_and_thumbnail
from .models import DEFAULT_MODEL, load_model

logger = logging.getLogger(__name__)

# Every model we ship wants 224 x 224; a model object may say otherwise.
_DEFAULT_INPUT_SIZE = 224


@dataclass
class Failure:
    """A photo that could not be fingerprinted, and why."""

    path: str
    reason: str


@dataclass
class FingerprintBatch:
    """Fingerprints of some photos, in the order they were asked for (failures left out)."""

    paths: list
    fingerprints: np.ndarray
    failures: list = field(default_factory=list)


class LazyModel:
    """A model given by name is built on first use, so TensorFlow loads only when needed."""

    def __init__(self, model, *, weights=None, cache_dir=None):
        if isinstance(model, str):
            self.name = check_model_name(model)
            self._model = None
        else:
            self.name = model.name
            self._model = model
        self._weights = weights
        self._cache_dir = cache_dir

    @property
    def input_size(self):
        if self._model is not None:
            return self._model.input_size
        return _DEFAULT_INPUT_SIZE

    @property
    def is_loaded(self):
        """Whether the model has been built (TensorFlow imported) yet."""
        return self._model is not None

    @property
    def loaded(self):
        """The model object, built now if it was not yet."""
        if self._model is None:
            logger.info("loading the %s model", self.name)
            self._model = load_model(self.name, weights=self._weights, cache_dir=self._cache_dir)
        return self._model


def iter_fingerprint_batches(
    paths, model, *, batch_size=DEFAULT_BATCH_SIZE, workers=None, progress=None, thumbnails=None,
):
    """Fingerprint photos batch by batch, decoding ahead in threads.

    Parameters
    ----------
    paths : sequence of path-like
        Photos, in the order their fingerprints are wanted.
    model : LazyModel
        The model; built when the first photo has decoded.
    batch_size : int, default=DEFAULT_BATCH_SIZE
        Photos per inference call.
    workers : int, default=None
        Decoding threads; None means one per core this process may use (:func:`usable_cores`).
    progress : callable, default=None
        Called with the number of photos just finished (fingerprinted or failed).
    thumbnails : ThumbnailFiles, default=None
        Also make a thumbnail of each photo from the same decode, handed to
        ``thumbnails.add(path, image)`` in the decoding thread (a gallery's
        thumbnails then cost no second decode).

    Yields
    ------
    FingerprintBatch
        One per batch (the last may be smaller), failures reported in the
        batch where they happened.
    """
    paths = [os.fspath(p) for p in paths]
    workers = workers or usable_cores()
    size = model.input_size
    if thumbnails is None:
        decode = functools.partial(load_image, size=size)
    else:
        decode = functools.partial(_decode_and_keep_thumbnail, size=size, thumbnails=thumbnails)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imagecluster-decode") as pool:
        pending = collections.deque()
        queued = iter(paths)

        def refill():
            # Keep two batches decoding ahead of the one being inferred.
            while len(pending) < 2 * batch_size:
                path = next(queued, None)
                if path is None:
                    return
                pending.append((path, pool.submit(decode, path)))

        refill()
        try:
            yield from _batches(pending, refill, model, batch_size, progress)
        finally:
            for _, future in pending:  # stopped early (error, Ctrl-C): drop queued decodes
                future.cancel()


def _decode_and_keep_thumbnail(path, size, thumbnails):
    array, thumbnail = load_image_and_thumbnail(path, size, thumbnails.side)
    if thumbnail is None:  # decoded too small for it: the gallery makes this one itself
        return array
    try:
        thumbnails.add(path, thumbnail)
    except OSError as exc:  # a full disk or a read-only store folder costs the thumbnail, not the fingerprint
        logger.warning("no thumbnail kept for %s: %s", path, exc)
    return array


def _batches(pending, refill, model, batch_size, progress):
    while pending:
        batch_paths, images, failures = [], [], []
        while pending and len(images) < batch_size:
            path, future = pending.popleft()
            refill()
            try:
                images.append(future.result())
                batch_paths.append(path)
            except NotAnImage as exc:
                failures.append(Failure(path, _reason(exc, path)))
        if images:
            vectors = model.loaded.fingerprint(np.stack(images))
        else:
            vectors = np.zeros((0, 0), dtype=np.float32)
        if progress is not None:
            progress(len(images) + len(failures))
        yield FingerprintBatch(batch_paths, vectors, failures)

def _reason(exc, path):
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def resolve_model(model, *, weights=None, cache_dir=None):
    """A LazyModel from a model name, a model object or a LazyModel."""
    if isinstance(model, LazyModel):
        return model
    if model is None:
        model = DEFAULT_MODEL
    return LazyModel(model, weights=weights, cache_dir=cache_dir)
