"""The daemon SIGKILLed 20 times at random moments while photos arrive: the store loads, nothing is lost or mixed.

Before each start two new photos are copied in; the daemon is killed after a
random 0.5-5 s (while it reconciles, fingerprints or writes its store). After
every kill the store must load and hold only the fingerprints of photos that
are there; in the end one daemon left running stores every photo, each
fingerprint equal to the one made for that photo alone.
"""

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

from imagecluster import Store

KILLS = 20


def test_daemon_killed_twenty_times_while_photos_arrive(session_bus, make_library, tmp_path, start_daemon, client):
    lib = make_library({"seed/dog.jpg": "dog.jpg", "seed/cat.jpg": "cat.jpg"}, root=tmp_path / "photos")
    sources = sorted(lib.rglob("*.jpg"))
    rng = random.Random(11)
    argv = [sys.executable, "-m", "imagecluster", "daemon", "--library", str(lib)]
    for n in range(KILLS):
        for k in range(2):  # photos arrive between and during runs
            target = lib / "new" / f"{n:02d}_{k}.jpg"
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(sources[(n + k) % 2].read_bytes())
        with open(tmp_path / "daemon-killed.log", "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=log)
        time.sleep(rng.uniform(0.5, 5.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        paths = Store(lib).fingerprints("lite0")[0]  # loads after every kill
        assert len(paths) == len(set(paths)) and all((lib / p).is_file() for p in paths)

    daemon = start_daemon(lib, config={"settle_seconds": 0.2})

    async def main():
        async with client() as ic:
            assert await ic.call_wait_idle(300.0)
            return await ic.get_indexed()

    indexed = asyncio.run(main())
    daemon.stop()
    photos = sorted(p.relative_to(lib).as_posix() for p in lib.rglob("*.jpg") if ".imagecluster" not in p.parts
                    and "clusters" not in p.parts)
    paths, stored = Store(lib).fingerprints("lite0")
    assert sorted(paths) == photos and indexed == len(photos) == 2 + 2 * KILLS
    # Each photo fingerprinted afresh by a clean run over a copy (a subprocess: this process must not
    # import TensorFlow, which later tests check): nothing was mixed between photos.
    copy = tmp_path / "copy"
    shutil.copytree(lib, copy, ignore=shutil.ignore_patterns(".imagecluster", "clusters"))
    subprocess.run([sys.executable, "-m", "imagecluster", "index", str(copy)], check=True, capture_output=True,
                   timeout=600)
    fresh = dict(zip(*Store(copy).fingerprints("lite0")))
    for path, vector in zip(paths, stored):
        np.testing.assert_allclose(vector, fresh[path], atol=2e-3)
    assert not list((lib / ".imagecluster").glob("damaged-*"))
    assert os.path.getsize(tmp_path / "daemon-killed.log") > 0
