"""The inference worker: a ``spawn`` process that owns the model, started on demand.

Only this child process imports TensorFlow, so an idle daemon does not hold
it in memory: the child exits by itself after ``idle_timeout`` seconds without
a request, and the next request starts a new one (a few seconds, mostly the
TensorFlow import). It uses the core pipeline, decoding in threads while the
network works.

Protocol over one duplex :func:`multiprocessing.Pipe`, one request at a time::

    parent -> child   (request_id, [path, ...])        or None: finish and exit
    child -> parent   ("ok", request_id, paths, shape, [(path, reason), ...])
                      then the float32 fingerprints as raw bytes (send_bytes)
                  or  ("error", request_id, error class name, message)

The parent waits for replies with ``loop.add_reader``, so no thread is used
and a cancelled call leaves nothing behind: its late reply is recognised by
its id and discarded.
"""

import asyncio
import itertools
import logging
import multiprocessing
import os
import signal

import numpy as np

from .. import _exceptions
from .._exceptions import ImageClusterError, InvalidParameter
from .._pipeline import Failure, FingerprintBatch
from .._validation import DEFAULT_BATCH_SIZE, check_batch_size, check_model_name
from ._logging import configure_logging

__all__ = ["InferenceWorker", "WorkerError"]

logger = logging.getLogger(__name__)

# Errors a child may report that the parent raises under their own name.
_KNOWN_ERRORS = {name: getattr(_exceptions, name) for name in _exceptions.__all__}


class WorkerError(ImageClusterError, RuntimeError):
    """The inference worker process failed (killed, out of memory, crashed); the next call starts a new one."""


class _IdleExit(Exception):
    """The child had exited for idleness before it read the request: ask a new one."""


def _serve(conn, model_name, batch_size, idle_timeout, log_level):
    """The child's main loop: answer requests until the sentinel, EOF, or idleness."""
    configure_logging()  # the daemon's format: one log, whichever process wrote a line
    logging.getLogger("imagecluster").setLevel(log_level)
    # Ctrl-C in a terminal and systemd's stop reach every process of the group: the parent
    # decides when the child stops (sentinel, or EOF when the parent is gone).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from .._pipeline import LazyModel, iter_fingerprint_batches

    model = LazyModel(model_name)
    logger.info("inference worker started (model %s)", model_name)
    try:
        while True:
            if not conn.poll(idle_timeout):
                logger.info("no work for %g s; exiting to free the model's memory", idle_timeout)
                return
            request = conn.recv()
            if request is None:
                return
            request_id, paths, thumbnails = request
            try:
                header, array = _fingerprint(paths, model, batch_size, iter_fingerprint_batches, thumbnails)
            except Exception as exc:
                logger.debug("request %d failed", request_id, exc_info=True)
                conn.send(("error", request_id, type(exc).__name__, str(exc)))
                continue
            conn.send(("ok", request_id, *header))
            conn.send_bytes(array if array.size else b"")
    except (EOFError, OSError):  # the parent went away
        return
    finally:
        conn.close()


def _fingerprint(paths, model, batch_size, iter_batches, thumbnails=None):
    sink = None
    if thumbnails is not None:  # (side, {photo path: thumbnail path}): kept from the same decode
        from ..gallery import ThumbnailFiles

        sink = ThumbnailFiles(*thumbnails)
    done, blocks, failures = [], [], []
    for batch in iter_batches(paths, model, batch_size=batch_size, thumbnails=sink):
        done.extend(batch.paths)
        if batch.paths:
            blocks.append(batch.fingerprints)
        failures.extend((f.path, f.reason) for f in batch.failures)
    array = np.concatenate(blocks) if blocks else np.zeros((0, 0), np.float32)
    array = np.ascontiguousarray(array, dtype=np.float32)
    return (done, array.shape, failures), array


class InferenceWorker:
    """A spawn process that owns the model: started on first use, exits after idle_timeout seconds without work.

    Parameters
    ----------
    model_name : {"lite0", "vgg16"}
        The model the child loads.
    idle_timeout : float, default=60.0
        Seconds without a request after which the child exits.
    batch_size : int, default=32
        Photos per inference call inside the child.
    """

    def __init__(self, model_name, *, idle_timeout=60.0, batch_size=DEFAULT_BATCH_SIZE):
        self.model_name = model_name
        self.idle_timeout = idle_timeout
        self.batch_size = batch_size
        self._process = None
        self._conn = None
        self._ids = itertools.count(1)
        self._lock = None
        self._lock_loop = None
        self._exit_watch = None  # (loop, fd): the child's sentinel, watched to reap it when it exits

    def __repr__(self):
        return f"InferenceWorker({self.model_name!r}, running={self.running})"

    @property
    def running(self):
        """Whether the child process is alive now."""
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self):
        """The child's process id, or None when there is no child."""
        return self._process.pid if self.running else None

    async def fingerprint(self, paths, *, thumbnails=None):
        """Fingerprint photos in the child, starting it if it is not running.

        Concurrent calls are served one after the other, in the order they came.

        Parameters
        ----------
        paths : sequence of str or path-like
            Photos, in the order their fingerprints are wanted.
        thumbnails : (int, dict of str to str) or None, default=None
            ``(side, {photo path: thumbnail file})``: the child also writes
            each photo's gallery thumbnail, from the same decode.

        Returns
        -------
        FingerprintBatch
            ``paths`` (those that decoded), ``fingerprints`` of shape
            ``(n_images, n_features)`` float32, and ``failures``.

        Raises
        ------
        WorkerError
            The child died while working (or could not start).
        ModelError
            The child could not load the model.
        """
        try:
            paths = [os.fspath(p) for p in paths]
        except TypeError as exc:
            raise InvalidParameter("paths must be a sequence of paths") from exc
        if not paths:
            return FingerprintBatch([], np.zeros((0, 0), np.float32), [])
        async with self._get_lock():
            for attempt in range(2):
                if not self.running:
                    self._spawn()
                    self._watch_exit()
                try:
                    return await self._round_trip(paths, thumbnails)
                except _IdleExit:
                    logger.debug("the worker exited for idleness as a request came; starting a new one")
            raise WorkerError("the inference worker exited at once twice in a row")

    async def close(self, timeout=5.0):
        """Stop the child: let it finish the request in hand, then send the sentinel; kill it after ``timeout``."""
        if self._process is None:
            return
        lock = self._get_lock()
        try:
            await asyncio.wait_for(lock.acquire(), timeout)
        except TimeoutError:
            logger.warning("the inference worker is still busy after %g s; killing it", timeout)
            self._process.kill()
            return  # the busy call sees EOF, raises WorkerError and cleans up
        try:
            if self._process is None:
                return
            process = self._process
            if process.is_alive():
                try:
                    self._conn.send(None)
                except OSError:
                    pass
                if not await self._wait_exit(timeout):
                    logger.warning("the inference worker did not stop within %g s; killing it", timeout)
                    process.kill()
                    await self._wait_exit(5.0)
            self._cleanup()
        finally:
            lock.release()

    # -------------------------------------------------------------- internals

    def _get_lock(self):
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    def _spawn(self):
        check_model_name(self.model_name)
        batch_size = check_batch_size(self.batch_size)
        idle = self.idle_timeout
        if isinstance(idle, bool) or not isinstance(idle, (int, float)) or not idle > 0:
            raise InvalidParameter(f"idle_timeout must be a number > 0, got {idle!r}")
        self._cleanup()
        ctx = multiprocessing.get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        level = logging.getLogger("imagecluster").getEffectiveLevel()
        process = ctx.Process(
            target=_serve, args=(child_conn, self.model_name, batch_size, float(idle), level),
            name="imagecluster-worker", daemon=True,
        )
        try:
            process.start()
        except OSError as exc:
            parent_conn.close()
            raise WorkerError(f"cannot start the inference worker: {exc}") from exc
        finally:
            child_conn.close()  # the child holds its end: EOF here means it is gone
        self._process, self._conn = process, parent_conn
        logger.info("started the inference worker (pid %d, model %s)", process.pid, self.model_name)

    async def _round_trip(self, paths, thumbnails=None):
        request_id = next(self._ids)
        try:
            self._conn.send((request_id, paths, thumbnails))
        except OSError:
            await self._died(len(paths))
        while True:
            await _readable([self._conn.fileno()])
            try:
                reply = self._conn.recv()
                if reply[0] == "ok":
                    _, reply_id, done, shape, failures = reply
                    array = np.empty(shape, np.float32)
                    if array.size:
                        self._conn.recv_bytes_into(memoryview(array).cast("B"))
                    else:
                        self._conn.recv_bytes()
                else:
                    _, reply_id, name, message = reply
            except (EOFError, OSError):
                await self._died(len(paths))
            if reply_id != request_id:
                continue  # the reply to a call that was cancelled
            if reply[0] == "ok":
                return FingerprintBatch(done, array, [Failure(p, r) for p, r in failures])
            error = _KNOWN_ERRORS.get(name)
            if error is None:
                raise WorkerError(f"the inference worker failed: {name}: {message}")
            raise error(message)

    async def _died(self, n_paths):
        process = self._process
        if not await self._wait_exit(5.0):
            process.kill()
            await self._wait_exit(5.0)
        code = process.exitcode
        pid = process.pid
        self._cleanup()
        if code == 0:
            raise _IdleExit()
        killed = code is not None and code < 0
        how = f"was killed by signal {signal.Signals(-code).name}" if killed else f"exited with status {code}"
        raise WorkerError(
            f"the inference worker (pid {pid}) {how} while fingerprinting {n_paths} photo(s); "
            "the next request starts a new one"
        )

    async def _wait_exit(self, timeout):
        """Wait for the child to exit, discarding what it still sends; False on timeout."""
        process, conn = self._process, self._conn
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while process.exitcode is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            fds = [process.sentinel] + ([conn.fileno()] if conn is not None and not conn.closed else [])
            ready = await _readable(fds, remaining)
            if conn is not None and not conn.closed and conn.fileno() in ready:
                try:
                    conn.recv_bytes()  # an unread reply: drop it so the child is not blocked writing
                except (EOFError, OSError):
                    conn.close()
            if process.sentinel in ready:
                process.join(1.0)
        return True

    def _watch_exit(self):
        """Reap the child as soon as it exits (for idleness, or killed), so it never lingers as a zombie.

        Nothing else waits for a child that exits on its own between requests:
        without this, its process table entry stayed until the next one started.
        """
        self._unwatch_exit()
        loop = asyncio.get_running_loop()
        process = self._process
        loop.add_reader(process.sentinel, self._reap, process)
        self._exit_watch = (loop, process.sentinel)

    def _unwatch_exit(self):
        if self._exit_watch is not None:
            loop, fd = self._exit_watch
            self._exit_watch = None
            if not loop.is_closed():
                loop.remove_reader(fd)  # before the fd is closed: a reused number must not be watched

    def _reap(self, process):
        self._unwatch_exit()
        self._reap_now_or_soon(process)

    def _reap_now_or_soon(self, process):
        if self._process is not process:
            return  # cleaned up meanwhile: _cleanup joined it
        process.join(0)  # waitpid; the Process object keeps the exit code for _died and `running`
        if process.exitcode is None:
            # The sentinel is readable once the child's files are closed, a moment
            # before the kernel makes it a zombie that waitpid can collect; under
            # load that moment was seen to pass the waitpid, leaving a zombie.
            asyncio.get_running_loop().call_later(0.05, self._reap_now_or_soon, process)

    def _cleanup(self):
        self._unwatch_exit()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            if self._process.exitcode is None:
                self._process.kill()
            self._process.join()
            self._process.close()
            self._process = None


async def _readable(fds, timeout=None):
    """Wait until one of the file descriptors is readable; return the set of those that are."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    ready = set()

    def mark(fd):
        ready.add(fd)
        if not future.done():
            future.set_result(None)

    for fd in fds:
        loop.add_reader(fd, mark, fd)
    try:
        await asyncio.wait_for(future, timeout)
    except TimeoutError:
        pass
    finally:
        for fd in fds:
            loop.remove_reader(fd)
    return ready
