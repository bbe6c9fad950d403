"""The indexer with an injected worker: queueing, settling, moves, deletes and library loss, without TensorFlow.

Real folders, real inotify, a real store; only the inference worker is
:class:`FakeWorker`, whose fingerprint of a file is a hash of its bytes. The
same behaviours with the real worker and model are in ``test_indexer.py``.
"""

import asyncio
import hashlib
import logging
import os
import shutil

import numpy as np
import pytest

from imagecluster import InvalidParameter, Store
from imagecluster._pipeline import Failure, FingerprintBatch
from imagecluster.daemon import Indexer, WorkerError
from imagecluster.gallery import library_thumbnails

from _support.poll import until

pytestmark = pytest.mark.mockbus

MODEL = "lite0"
TIMEOUT = 20.0  # an upper bound for waits, never a measurement


class FakeWorker:
    """What the indexer needs of :class:`~imagecluster.daemon.InferenceWorker`, in this process.

    A file whose bytes start with ``b"bad"`` cannot be decoded; ``die`` makes
    the next calls raise WorkerError, as a killed child does.
    """

    model_name = MODEL

    def __init__(self):
        self.sent = []  # every path sent, in order
        self.thumbnails = []  # the thumbnails argument of each call that had one
        self.die = 0
        self.closed = False

    async def fingerprint(self, paths, **thumbnails):
        paths = [os.fspath(p) for p in paths]
        self.sent += paths
        if thumbnails:
            self.thumbnails.append(thumbnails["thumbnails"])
        if self.die:
            self.die -= 1
            raise WorkerError("the inference worker (pid 0) was killed by signal SIGKILL")
        await asyncio.sleep(0)
        done, vectors, failures = [], [], []
        for path in paths:
            with open(path, "rb") as f:
                data = f.read()
            if data.startswith(b"bad"):
                failures.append(Failure(path, "cannot identify image file"))
                continue
            seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "little")
            v = np.random.default_rng(seed).normal(size=1280).astype(np.float32)
            done.append(path)
            vectors.append(v / np.linalg.norm(v))
        return FingerprintBatch(done, np.array(vectors, np.float32).reshape(len(done), 1280), failures)

    async def close(self, timeout=5.0):
        self.closed = True


def photo(path, text=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((text or path.name).encode() + os.urandom(8))
    return path


def stored(library):
    return set(Store(library).entries(MODEL))


async def eventually(predicate, what):
    """Await until ``predicate()`` is true, the event loop running meanwhile (the shared polling helper)."""
    await until(lambda: asyncio.sleep(0, predicate()), TIMEOUT, what, interval=0.02)


def run(library, scenario, **options):
    """Run ``scenario(indexer, worker)`` with a started indexer over ``library``; stop it after."""
    worker = FakeWorker()
    settings = dict(settle_seconds=0.1, rescan_seconds=0.2, batch_size=4, worker=worker)
    settings.update(options)

    async def main():
        indexer = Indexer([library], **settings)
        await indexer.start()
        try:
            await scenario(indexer, worker)
        finally:
            await indexer.stop()
        return worker

    return asyncio.run(main())


def test_with_thumbnails_the_worker_is_told_where_each_goes(tmp_path):
    """The daemon's galleries find each photo's thumbnail where the cache names it (size and mtime in the name)."""
    lib = tmp_path / "lib"
    photos = [photo(lib / f"{i}.jpg") for i in range(5)]

    async def scenario(indexer, worker):
        await asyncio.wait_for(indexer.wait_idle(), TIMEOUT)

    worker = run(lib, scenario, thumbnails=True)
    cache = library_thumbnails(Store(lib))
    targets = {}
    for side, batch in worker.thumbnails:
        assert side == 256
        targets.update(batch)
    assert targets == {
        os.fspath(p): os.fspath(cache.file(p.name, p.stat().st_size, p.stat().st_mtime_ns))
        for p in photos
    }
    other = tmp_path / "other"
    photo(other / "a.jpg")
    plain = run(other, scenario)  # off by default: the worker is asked for fingerprints only
    assert plain.sent == [os.fspath(other / "a.jpg")] and plain.thumbnails == []


def test_startup_queues_every_photo_in_batches(tmp_path):
    lib = tmp_path / "lib"
    for i in range(10):
        photo(lib / "2024" / f"{i}.jpg")

    async def scenario(indexer, worker):
        await asyncio.wait_for(indexer.wait_idle(), TIMEOUT)
        assert indexer.indexed == 10 and indexer.pending == 0 and indexer.state == "idle"

    worker = run(lib, scenario)
    assert len(worker.sent) == 10 and not worker.closed  # a shared worker is not closed
    assert stored(lib) == {f"2024/{i}.jpg" for i in range(10)}


def test_a_new_photo_is_fingerprinted_once_settled(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    changes = []

    async def scenario(indexer, worker):
        path = photo(lib / "new.jpg")
        await eventually(lambda: indexer.indexed == 1, "the new photo stored")
        assert worker.sent == [str(path)]

    run(lib, scenario, on_change=lambda: changes.append(1))
    assert changes and stored(lib) == {"new.jpg"}


def test_a_growing_file_is_sent_only_when_it_stopped_changing(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()

    async def scenario(indexer, worker):
        path = lib / "download.jpg"
        with open(path, "wb") as f:
            for _ in range(6):
                f.write(os.urandom(1000))
                f.flush()
                await asyncio.sleep(0.05)  # shorter than settle_seconds each time
        await eventually(lambda: indexer.indexed == 1, "the download stored")
        assert worker.sent == [str(path)]

    run(lib, scenario, settle_seconds=0.3)


def test_moves_keep_the_fingerprint_without_recomputing(tmp_path):
    lib = tmp_path / "lib"
    photo(lib / "a" / "1.jpg")
    photo(lib / "a" / "2.jpg")

    async def scenario(indexer, worker):
        await asyncio.wait_for(indexer.wait_idle(), TIMEOUT)
        sent = list(worker.sent)
        os.rename(lib / "a" / "1.jpg", lib / "a" / "one.jpg")
        os.rename(lib / "a", lib / "b")
        await eventually(lambda: stored(lib) == {"b/one.jpg", "b/2.jpg"}, "the moves stored")
        await asyncio.wait_for(indexer.wait_idle(), TIMEOUT)
        assert worker.sent == sent

    run(lib, scenario)


def test_a_deleted_photo_leaves_the_store(tmp_path):
    lib = tmp_path / "lib"
    photo(lib / "1.jpg")
    photo(lib / "2.jpg")

    async def scenario(indexer, worker):
        await asyncio.wait_for(indexer.wait_idle(), TIMEOUT)
        (lib / "1.jpg").unlink()
        await eventually(lambda: stored(lib) == {"2.jpg"}, "the deletion stored (after its grace time)")
        assert indexer.indexed == 1

    run(lib, scenario)


def test_a_photo_that_cannot_be_read_is_not_tried_again(tmp_path):
    lib = tmp_path / "lib"
    photo(lib / "broken.jpg", "bad bytes")
    photo(lib / "good.jpg")

    async def scenario(indexer, worker):
        await asyncio.wait_for(indexer.wait_idle(), TIMEOUT)
        (lib / "other.jpg").write_bytes(b"new")
        await eventually(lambda: indexer.indexed == 2, "the next photo stored")
        assert worker.sent.count(str(lib / "broken.jpg")) == 1

    run(lib, scenario)
    assert "broken.jpg" in Store(lib).unreadable(MODEL)


def test_a_worker_that_dies_gets_the_batch_once_more(tmp_path, caplog):
    lib = tmp_path / "lib"
    lib.mkdir()

    async def scenario(indexer, worker):
        worker.die = 1
        photo(lib / "1.jpg")
        await eventually(lambda: indexer.indexed == 1, "stored on the second try")
        assert worker.sent == [str(lib / "1.jpg")] * 2

    with caplog.at_level(logging.ERROR, "imagecluster"):
        run(lib, scenario)
    assert "will be tried once more" in caplog.text


def test_a_photo_the_worker_dies_on_twice_is_given_up(tmp_path, caplog):
    lib = tmp_path / "lib"
    lib.mkdir()

    async def scenario(indexer, worker):
        worker.die = 2
        photo(lib / "1.jpg")
        await eventually(lambda: "failed on it twice" in caplog.text, "given up")
        await asyncio.wait_for(indexer.wait_idle(), TIMEOUT)
        assert indexer.indexed == 0 and len(worker.sent) == 2

    with caplog.at_level(logging.ERROR, "imagecluster"):
        run(lib, scenario)


def test_a_library_that_goes_away_and_comes_back(tmp_path, caplog):
    lib = tmp_path / "lib"
    photo(lib / "1.jpg")

    async def scenario(indexer, worker):
        await asyncio.wait_for(indexer.wait_idle(), TIMEOUT)
        shutil.move(lib, tmp_path / "unmounted")
        await eventually(lambda: indexer.available_libraries == [], "the library lost")
        assert indexer.indexed == 0
        shutil.move(tmp_path / "unmounted", lib)
        photo(lib / "2.jpg")  # added while it was away
        await eventually(lambda: indexer.indexed == 2, "the library back, the new photo stored")
        assert worker.sent.count(str(lib / "1.jpg")) == 1  # its fingerprint was kept

    with caplog.at_level(logging.INFO, "imagecluster"):
        run(lib, scenario)
    assert "skipping it until it comes back" in caplog.text and "available again" in caplog.text


def test_fingerprint_goes_ahead_of_the_queue_and_is_stored(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()

    async def scenario(indexer, worker):
        path = photo(lib / "asked.jpg")
        vector = await indexer.fingerprint(str(path))
        assert vector.shape == (1280,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-3
        again = await indexer.fingerprint(str(path))  # from the store now
        assert worker.sent.count(str(path)) == 1 and np.allclose(vector, again, atol=1e-3)

    run(lib, scenario, settle_seconds=30.0)  # the queue would wait 30 s for it
    assert stored(lib) == {"asked.jpg"}


def test_a_worker_of_another_model_is_refused(tmp_path):
    worker = FakeWorker()
    worker.model_name = "vgg16"
    with pytest.raises(InvalidParameter, match="the worker runs"):
        Indexer([tmp_path], worker=worker)
