"""What runs inside a Dask worker: the model, built once per worker, and one batch of photos.

Imported only when ``distributed`` is installed (by :mod:`imagecluster._distributed`
on the client, and by the worker when it unpickles a task). A worker runs
exactly the local pipeline (:func:`~imagecluster._pipeline.iter_fingerprint_batches`:
reduced-scale decoding in threads, one inference call per batch) and sends
back float16 fingerprints, a few kB per photo. It never writes anything: the
client alone writes the library's store.
"""

import os
import threading
from dataclasses import dataclass, field

import numpy as np
from distributed import WorkerPlugin, get_worker

from ._capture import read_capture
from ._cores import usable_cores
from ._pipeline import iter_fingerprint_batches, resolve_model

__all__ = ["PLUGIN_NAME", "BatchResult", "ModelPlugin", "fingerprint_batch", "has_plugin"]

#: The name the model plugin is registered under on every worker.
PLUGIN_NAME = "imagecluster-models"

# Inference calls per task, so that decoding and inference overlap inside a task.
_OVERLAP_PARTS = 4


@dataclass
class BatchResult:
    """What a worker sends back for one batch; photos are named by their position in the batch.

    Attributes
    ----------
    done : list of int
        Positions of the photos fingerprinted, in the order of ``fingerprints``.
    fingerprints : numpy.ndarray of shape (len(done), n_features), float16
        L2-normalised fingerprints.
    failures : list of (int, str)
        Position and reason of each photo that could not be decoded.
    unmounted : bool
        The library's folder does not exist on this worker (share not
        mounted, or a wrong path map): nothing was read, nothing is a failure.
    worker : str
        The worker's address, for messages.
    captures : list of Capture
        When and where each photo of ``done`` was taken, read from its header
        here, while the file is in this machine's cache: the client reads no photo.
    """

    done: list = field(default_factory=list)
    fingerprints: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float16))
    failures: list = field(default_factory=list)
    unmounted: bool = False
    worker: str = ""
    captures: list = field(default_factory=list)


class ModelPlugin(WorkerPlugin):
    """Keeps the fingerprint models of one worker process, each built on its first batch.

    Registered once by the client (``client.register_plugin``); Dask gives a
    copy to every worker, also to those that join or restart later. The
    models live on this plugin, which lives on the worker: no module state.
    """

    name = PLUGIN_NAME

    def __init__(self):
        self._models = {}
        self._lock = None

    def setup(self, worker):
        self._models = {}
        self._lock = threading.Lock()

    def model(self, name):
        """The built model for ``name``, as a LazyModel; the first call loads it (TensorFlow).

        Under a lock: a worker with several threads builds each model once.
        """
        with self._lock:
            if name not in self._models:
                lazy = resolve_model(name)
                lazy.loaded  # noqa: B018 - build it now, under the lock
                self._models[name] = lazy
            return self._models[name]


def has_plugin(dask_worker):
    """Whether a worker has the model plugin already (``client.run``): its models stay loaded."""
    return isinstance(dask_worker.plugins.get(PLUGIN_NAME), ModelPlugin)


def fingerprint_batch(paths, *, model, batch_size, root):
    """Fingerprint photos on this worker; the Dask task the client submits.

    Parameters
    ----------
    paths : list of str
        Absolute paths as this worker sees them (path map applied).
    model : str
        Model name.
    batch_size : int
        Photos of the task (a quarter of them per inference call).
    root : str
        The library's folder as this worker sees it. When it is missing, the
        share is not mounted here: the batch is sent back unread, so the
        client gives it to another worker instead of calling photos unreadable.

    Returns
    -------
    BatchResult
    """
    worker = get_worker()
    if not os.path.isdir(root):
        return BatchResult(unmounted=True, worker=worker.address)
    lazy = worker.plugins[PLUGIN_NAME].model(model)
    position = {path: i for i, path in enumerate(paths)}
    done, vectors, failures = [], [], []
    # This task's share of the machine's cores decodes: a worker running
    # nthreads tasks at once must not start nthreads x cores threads.
    threads = max(1, usable_cores() // max(1, int(worker.state.nthreads)))
    # Inference in quarters of the task: the pipeline decodes the next quarter while the network
    # works on this one, as a local run overlaps its batches (one inference call for the whole task
    # would decode everything first and leave the cores idle in turn). Fingerprints do not depend on it.
    inference = max(1, -(-batch_size // _OVERLAP_PARTS))
    for batch in iter_fingerprint_batches(paths, lazy, batch_size=inference, workers=threads):
        done.extend(position[p] for p in batch.paths)
        if len(batch.paths):
            vectors.append(np.asarray(batch.fingerprints, dtype=np.float16))
        failures.extend((position[f.path], f.reason) for f in batch.failures)
    if failures and not os.path.isdir(root):  # the share went away during the batch
        return BatchResult(unmounted=True, worker=worker.address)
    fingerprints = np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float16)
    captures = [read_capture(paths[i]) for i in done]
    return BatchResult(done, fingerprints, failures, worker=worker.address, captures=captures)
