"""Fingerprinting a library on a Dask cluster: workers decode and infer, this process alone writes the store.

The client scans the library as a local run does (:func:`~imagecluster._library.scan_library`),
sends batches of paths to Dask workers, and writes each batch's results into
the store as soon as it comes back: one journal append per batch, so a
crashed worker or client loses nothing already returned, and the next run
does only what is missing. At most a few batches per worker thread are in
flight at once, so the client's and the scheduler's memory stay the same at
a million photos as at a thousand.

Workers read the photos from a share they mount too (NFS, SMB). Where a
worker mounts it elsewhere, a path map (``/photos=/mnt/nas/photos``) turns
the client's paths into the worker's. A worker that does not see the library
folder at all sends its batch back unread and the batch goes to another
worker: a photo is called unreadable only by a worker that sees the library.

Dask reschedules the batches of a worker that dies; a batch that kills
workers again and again (Dask's ``allowed-failures``) is split until the one
photo is found, which is reported but not marked unreadable (it is tried
again by the next run).
"""

import contextlib
import logging
import os
import re
import time

from ._exceptions import InvalidParameter, MissingDependency, SchedulerError
from ._library import scan_library, store_batch
from ._pairs import count_pairs
from ._pipeline import DEFAULT_BATCH_SIZE, Failure, FingerprintBatch, check_batch_size, resolve_model
from .images import check_library
from .store import Store

__all__ = [
    "INSTALL_HINT",
    "check_path_map",
    "check_scheduler",
    "dask_client",
    "index_distributed",
    "index_with_scheduler",
    "map_path",
]

logger = logging.getLogger(__name__)

#: What to install for a Dask scheduler.
INSTALL_HINT = "pip install 'imagecluster[dask]'"

#: Batches in flight per worker thread: one running, the next ones already on their way.
IN_FLIGHT_PER_THREAD = 3

#: Seconds to wait for the first worker to join the scheduler.
WORKER_WAIT_SECONDS = 60.0

# How often (seconds) the number of worker threads, and so the batches in flight, is looked up again.
_RECOUNT_SECONDS = 5.0

_LOCAL = re.compile(r"local:(\d+)")


def check_scheduler(scheduler):
    """``scheduler`` checked: ``"local:N"`` (N worker processes here) or a scheduler address.

    Parameters
    ----------
    scheduler : str
        ``"local:N"`` with 1 <= N <= 256, or an address such as
        ``"tcp://host:8786"`` (``"host:8786"`` means tcp too).

    Returns
    -------
    str
    """
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise InvalidParameter(f"scheduler must be an address like tcp://host:8786 or local:N, got {scheduler!r}")
    scheduler = scheduler.strip()
    if scheduler.startswith("local"):
        match = _LOCAL.fullmatch(scheduler)
        if match is None or not 1 <= int(match.group(1)) <= 256:
            raise InvalidParameter(f"a local scheduler is local:N, N worker processes in 1..256; got {scheduler!r}")
    return scheduler


def check_path_map(path_map):
    """Path-map rules checked and ordered, longest prefix first.

    Parameters
    ----------
    path_map : iterable of str or (str, str)
        ``"OLD=NEW"`` or ``(OLD, NEW)``: a path at or below the absolute
        folder OLD on this machine is NEW on the workers.

    Returns
    -------
    tuple of (str, str)
    """
    rules = []
    for rule in path_map or ():
        if isinstance(rule, str):
            old, sep, new = rule.partition("=")
            if not sep:
                raise InvalidParameter(f"a path map is OLD=NEW (e.g. /photos=/mnt/nas/photos), got {rule!r}")
        else:
            try:
                old, new = rule
            except (TypeError, ValueError):
                raise InvalidParameter(f"a path map is OLD=NEW or (OLD, NEW), got {rule!r}") from None
        old, new = os.fspath(old), os.fspath(new)
        if not (os.path.isabs(old) and os.path.isabs(new)):
            raise InvalidParameter(f"both sides of a path map must be absolute folders, got {old!r}={new!r}")
        rules.append((os.path.normpath(old), os.path.normpath(new)))
    return tuple(sorted(rules, key=lambda r: len(r[0]), reverse=True))


def map_path(path, path_map):
    """``path`` as the workers see it: the longest matching OLD prefix replaced by its NEW."""
    path = os.fspath(path)
    for old, new in path_map:
        if path == old or path.startswith(old.rstrip("/") + "/"):
            return new + path[len(old):] if old != "/" else os.path.join(new, path[1:])
    return path


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise MissingDependency(
            f"running on a Dask scheduler needs the 'distributed' package: {INSTALL_HINT}"
        ) from exc
    return distributed


@contextlib.contextmanager
def dask_client(scheduler, *, timeout=10.0):
    """A ``distributed.Client`` for ``scheduler``, closed (with its local cluster) on exit.

    Parameters
    ----------
    scheduler : str
        ``"local:N"`` starts a ``LocalCluster`` of N worker processes, one
        thread each; anything else is the address of a running scheduler.
    timeout : float, default=10.0
        Seconds to wait for a remote scheduler to answer.

    Yields
    ------
    distributed.Client

    Raises
    ------
    MissingDependency
        ``distributed`` is not installed.
    SchedulerError
        The scheduler cannot be reached.
    """
    scheduler = check_scheduler(scheduler)
    distributed = _import_distributed()
    with contextlib.ExitStack() as stack:
        match = _LOCAL.fullmatch(scheduler)
        if match:
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=int(match.group(1)), threads_per_worker=1, processes=True, dashboard_address=":0",
                silence_logs=logging.ERROR,
            ))
            address = cluster
        else:
            address = scheduler
        try:
            client = stack.enter_context(distributed.Client(address, timeout=timeout))
        except (OSError, TimeoutError) as exc:
            raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
        yield client


def index_distributed(
    library, client, *, model=None, store=None, exclude=(), batch_size=DEFAULT_BATCH_SIZE, path_map=(),
    progress=None, compact=True, in_flight_per_thread=IN_FLIGHT_PER_THREAD, stop=None,
):
    """Fingerprint the new and changed photos of a library on Dask workers; this process writes the store.

    The same work as :func:`~imagecluster.index_library`, with the same
    report and the same store records, decoding and inference done by the
    workers of ``client``.

    Parameters
    ----------
    library : path-like
        The photo folder, as this machine sees it.
    client : distributed.Client
        Connected to the scheduler (see :func:`dask_client`).
    model : str, default=None
        Model name; None means the default model. Workers build it once each.
    store : Store, default=None
        The library's store; None opens it.
    exclude : iterable of path-like, default=()
        Folders not to index.
    batch_size : int, default=DEFAULT_BATCH_SIZE
        Photos per Dask task (and per inference call on the worker).
    path_map : iterable of str or (str, str), default=()
        ``OLD=NEW`` rules for workers that mount the library elsewhere
        (see :func:`check_path_map`).
    progress : callable, default=None
        As for :func:`~imagecluster.index_library`: ``progress(total)``
        returns ``advance(n)``.
    compact : bool, default=True
        Rewrite the store's snapshot at the end.
    in_flight_per_thread : int, default=IN_FLIGHT_PER_THREAD
        Batches submitted and not yet written, per worker thread.
    stop : threading.Event, default=None
        Set from another thread to end the run after the batch in hand (the
        daemon stopping); what is stored stays, the rest is left for later.

    Returns
    -------
    IndexReport
        Photos that no worker could read because the library was not
        mounted there are in ``failures`` but not marked unreadable.

    Raises
    ------
    SchedulerError
        No worker joined, or no worker sees the library folder.
    """
    root = check_library(library)
    batch_size = check_batch_size(batch_size)
    in_flight_per_thread = check_batch_size(in_flight_per_thread)
    path_map = check_path_map(path_map)
    name = resolve_model(model).name
    store = store if store is not None else Store(root)
    todo, gone, report = scan_library(root, store, name, exclude=exclude)
    if gone:
        store.remove(gone)
        report.removed = len(gone)
    if todo:
        run = _Run(client, root, store, name, report, batch_size=batch_size, path_map=path_map,
                   per_thread=in_flight_per_thread)
        run.check_workers()
        advance = progress(len(todo)) if progress is not None else None
        run.run(todo, advance, stop)
    if compact:
        store.compact()
    report.pairs = count_pairs(store.entries(name))
    return report


def index_with_scheduler(library, scheduler, **options):
    """Connect to ``scheduler`` (or start ``local:N``), index the library there, disconnect.

    Parameters
    ----------
    library : path-like
        The photo folder.
    scheduler : str
        See :func:`dask_client`.
    **options
        Keyword arguments of :func:`index_distributed`.

    Returns
    -------
    IndexReport
    """
    with dask_client(scheduler) as client:
        return index_distributed(library, client, **options)


class _Run:
    """One pass: submits batches, keeps a bounded number in flight, stores results as they complete."""

    def __init__(self, client, root, store, model, report, *, batch_size, path_map, per_thread):
        from . import _dask_worker

        self._distributed = _import_distributed()
        self._worker = _dask_worker
        self.client, self.root, self.store, self.model, self.report = client, root, store, model, report
        self.batch_size, self.path_map, self.per_thread = batch_size, path_map, per_thread
        self.worker_root = map_path(os.fspath(root), path_map)
        self.unmounted = set()  # workers seen without the library
        self.stats = {}
        self.known = store.entries(model)

    def check_workers(self):
        """Wait for a worker; fail at once if none sees the library folder."""
        try:
            self.client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
        except TimeoutError as exc:
            raise SchedulerError(
                f"no Dask worker joined the scheduler within {WORKER_WAIT_SECONDS:g} s; start one with "
                f"`dask worker {self.client.scheduler.address}`"
            ) from exc
        seen = self.client.run(os.path.isdir, self.worker_root)
        missing = sorted(w for w, ok in seen.items() if not ok)
        if len(missing) == len(seen):
            raise SchedulerError(self._unmounted_message(missing))
        for worker in missing:
            logger.warning("Dask worker %s does not see %s (not mounted there?); its batches go to other workers",
                           worker, self.worker_root)
        self.unmounted.update(missing)
        # Once per cluster: registering again would make every worker load its model again.
        # Workers that join later get the registered plugin from the scheduler.
        if not all(self.client.run(self._worker.has_plugin).values()):
            self.client.register_plugin(self._worker.ModelPlugin(), name=self._worker.PLUGIN_NAME)

    def _unmounted_message(self, workers):
        hint = "" if self.worker_root != os.fspath(self.root) else \
            " (if the workers mount it elsewhere, map the path: OLD=NEW)"
        return (f"no Dask worker sees the library folder {self.worker_root}: it is not mounted on "
                f"{', '.join(workers)}{hint}")

    def run(self, todo, advance, stop=None):
        """Fingerprint ``todo`` [(rel, size, mtime_ns)], storing each batch as it completes, until ``stop`` is set."""
        self.stats = {rel: (size, mtime) for rel, size, mtime in todo}
        queue = [[rel for rel, _, _ in todo[i:i + self.batch_size]] for i in range(0, len(todo), self.batch_size)]
        queue.reverse()  # popped from the end: the library's order
        pending, tries = {}, {}
        completed = self._distributed.as_completed()
        slots, recounted = self._slots(), time.monotonic()
        try:
            while (queue or pending) and not (stop is not None and stop.is_set()):
                while queue and len(pending) < slots:
                    rels = queue.pop()
                    future = self._submit(rels)
                    pending[future] = rels
                    completed.add(future)
                future = next(completed)
                rels = pending.pop(future)
                queue.extend(reversed(self._collect(future, rels, advance, tries)))
                del future  # its result is stored: let the scheduler forget it
                if time.monotonic() - recounted > _RECOUNT_SECONDS:
                    slots, recounted = self._slots(), time.monotonic()
        finally:
            if pending:  # interrupted or failed: what is stored stays, the rest is for the next run
                self.client.cancel(list(pending))

    def _slots(self):
        threads = sum(self.client.nthreads().values())
        return max(2, self.per_thread * threads)

    def _submit(self, rels):
        paths = [map_path(os.fspath(self.root / rel), self.path_map) for rel in rels]
        return self.client.submit(
            self._worker.fingerprint_batch, paths, model=self.model, batch_size=self.batch_size,
            root=self.worker_root, pure=False,
        )

    def _collect(self, future, rels, advance, tries):
        """Store one completed batch; returns the batches to submit again (list of lists of rel)."""
        try:
            result = future.result()
        except self._distributed.KilledWorker:
            return self._killed(rels, advance)
        if result.unmounted:
            return self._unmounted(result.worker, rels, advance, tries)
        absolute = [self.root / rel for rel in rels]
        batch = FingerprintBatch(
            [absolute[i] for i in result.done],
            result.fingerprints,
            [Failure(os.fspath(absolute[i]), reason) for i, reason in result.failures],
        )
        store_batch(self.store, self.model, batch, root=self.root, stats=self.stats, known=self.known,
                    report=self.report, captures=result.captures)
        if advance is not None:
            advance(len(rels))
        return []

    def _killed(self, rels, advance):
        if len(rels) > 1:  # find the photo that kills workers: halves, then quarters, ...
            half = len(rels) // 2
            logger.warning("a batch of %d photos killed Dask workers repeatedly; trying it in halves", len(rels))
            return [rels[:half], rels[half:]]
        path = os.fspath(self.root / rels[0])
        logger.warning("%s killed Dask workers repeatedly; not fingerprinted (tried again next run)", path)
        self.report.failures.append(Failure(path, "not fingerprinted: it killed the Dask workers that read it"))
        if advance is not None:
            advance(1)
        return []

    def _unmounted(self, worker, rels, advance, tries):
        if worker not in self.unmounted:
            self.unmounted.add(worker)
            logger.warning("Dask worker %s does not see %s (not mounted there?); its batches go to other workers",
                           worker, self.worker_root)
        key = rels[0]
        tries[key] = tries.get(key, 0) + 1
        workers = set(self.client.nthreads())
        if tries[key] <= 2 * max(1, len(workers)) and not workers <= self.unmounted:
            return [rels]
        if workers <= self.unmounted:
            raise SchedulerError(self._unmounted_message(sorted(workers)))
        reason = f"not read: the library is not mounted on the Dask workers that took it ({worker}, ...)"
        self.report.failures.extend(Failure(os.fspath(self.root / rel), reason) for rel in rels)
        if advance is not None:
            advance(len(rels))
        return []
