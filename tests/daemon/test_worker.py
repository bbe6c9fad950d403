"""The inference worker: a real spawn process running the real lite0 model."""

import asyncio
import os
import signal
import time

import numpy as np
import pytest

from imagecluster import InvalidParameter
from imagecluster.daemon import InferenceWorker, WorkerError

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
CAT, DOG = os.path.join(DATA, "cat.jpg"), os.path.join(DATA, "dog.jpg")


async def eventually(predicate, timeout=30.0, what="the condition"):
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds (a bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.05)


def test_fingerprints_in_a_child_process_exits_when_idle_and_recovers_from_its_death(tmp_path, no_tensorflow_here):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")

    async def main():
        worker = InferenceWorker("lite0", idle_timeout=1.0, batch_size=2)
        assert not worker.running  # nothing starts before the first call
        try:
            batch = await worker.fingerprint([CAT, str(text), DOG, CAT])
            assert worker.running
            assert batch.paths == [CAT, DOG, CAT]  # order kept, the failure left out
            assert batch.fingerprints.shape == (3, 1280) and batch.fingerprints.dtype == np.float32
            assert batch.fingerprints.flags.writeable
            np.testing.assert_allclose(np.linalg.norm(batch.fingerprints, axis=1), 1.0, rtol=1e-5)
            np.testing.assert_array_equal(batch.fingerprints[0], batch.fingerprints[2])
            assert not np.allclose(batch.fingerprints[0], batch.fingerprints[1])
            assert [f.path for f in batch.failures] == [str(text)]
            assert not no_tensorflow_here.attempts  # only the child imports TensorFlow

            # concurrent calls are served one after the other, each with its own result
            results = await asyncio.gather(*(worker.fingerprint([p]) for p in (DOG, CAT, DOG)))
            assert [r.paths for r in results] == [[DOG], [CAT], [DOG]]
            np.testing.assert_array_equal(results[0].fingerprints, results[2].fingerprints)
            failed = await worker.fingerprint([str(text)])  # nothing decodes
            assert failed.paths == [] and failed.fingerprints.shape[0] == 0 and len(failed.failures) == 1
            empty = await worker.fingerprint([])
            assert empty.paths == [] and empty.fingerprints.shape[0] == 0

            # idle: the child exits by itself, and the next call starts a new one
            pid = worker.pid
            await eventually(lambda: not worker.running, what="the idle worker's exit")
            again = await worker.fingerprint([CAT])
            assert worker.running and worker.pid != pid
            np.testing.assert_allclose(again.fingerprints[0], batch.fingerprints[0], atol=1e-6)

            # the child dies (as by the OOM killer): a clear error, then a new child
            pid = worker.pid
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(WorkerError, match="killed by signal SIGKILL"):
                await worker.fingerprint([DOG])
            assert not worker.running
            again = await worker.fingerprint([DOG])
            assert worker.running and worker.pid != pid
            np.testing.assert_allclose(again.fingerprints[0], batch.fingerprints[1], atol=1e-6)
        finally:
            await worker.close(timeout=5.0)
        assert not worker.running
        await worker.close()  # closing twice is fine

    asyncio.run(main())


def test_bad_arguments_are_refused_before_any_process_starts():
    async def main():
        with pytest.raises(InvalidParameter, match="unknown model"):
            await InferenceWorker("resnet").fingerprint([CAT])
        with pytest.raises(InvalidParameter, match="idle_timeout"):
            await InferenceWorker("lite0", idle_timeout=0).fingerprint([CAT])
        with pytest.raises(InvalidParameter, match="batch_size"):
            await InferenceWorker("lite0", batch_size=0).fingerprint([CAT])
        with pytest.raises(InvalidParameter, match="paths"):
            await InferenceWorker("lite0").fingerprint([1, 2])

    asyncio.run(main())


def test_a_child_that_exits_for_idleness_is_reaped_at_once():
    async def main():
        worker = InferenceWorker("lite0", idle_timeout=1.0, batch_size=2)
        try:
            await worker.fingerprint([CAT])
            pid = worker.pid
            # Only the event loop runs from here: nothing asks the worker whether
            # its child is alive (which would reap it as a side effect).
            deadline = time.monotonic() + 30.0
            while True:
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        state = f.read().rpartition(")")[2].split()[0]
                except FileNotFoundError:
                    break  # gone from the process table: reaped
                assert time.monotonic() < deadline, f"the idle worker {pid} is still in state {state}"
                await asyncio.sleep(0.1)
            again = await worker.fingerprint([DOG])  # and the next call starts a new one
            assert again.paths == [DOG] and worker.pid != pid
        finally:
            await worker.close(timeout=5.0)

    asyncio.run(main())


def _close_files_then_linger(seconds):
    """A child that closes every inherited file (its sentinel among them), then lives on a moment."""
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2:
            try:
                os.close(int(name))
            except OSError:
                pass
    time.sleep(seconds)
    os._exit(0)


def test_a_child_whose_sentinel_closes_before_it_exits_is_still_reaped():
    # The sentinel becomes readable as the child's files close, a moment before
    # waitpid can collect it: a single waitpid then found it alive, and the child
    # stayed a zombie. This child widens that moment to half a second.
    import multiprocessing

    async def main():
        worker = InferenceWorker("lite0")
        process = multiprocessing.get_context("fork").Process(target=_close_files_then_linger, args=(0.5,))
        process.start()
        worker._process = process
        worker._watch_exit()
        deadline = time.monotonic() + 10.0
        while os.path.exists(f"/proc/{process.pid}") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not os.path.exists(f"/proc/{process.pid}"), "the child was left a zombie"
        assert process.exitcode == 0
        worker._cleanup()

    asyncio.run(main())
