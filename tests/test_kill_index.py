"""``imagecluster index`` SIGKILLed 20 times at random moments, on real photos with the real model.

Half the kills land at any moment (start-up included), half while the run
stores photos (a moment after it first appended to the journal): fixed
delays alone missed the storing on a loaded machine, where start-up took
longer than the longest delay.

After each kill the store loads and holds only real fingerprints of the
library's photos (each the one a clean run makes, nothing mixed between
photos); the next run resumes and, in the end, every photo is stored once.
"""

import os
import random
import subprocess
import sys
import time

import numpy as np

from imagecluster import Store, index_library
from imagecluster._store_files import JOURNAL_NAME, file_version  # the store's own test of a file's version

KILLS = 20


def test_index_killed_twenty_times_resumes_and_loses_nothing(make_library, tmp_path):
    layout = {f"{k // 10}/shot_{k:02d}.jpg": ("dog.jpg" if k % 2 else "cat.jpg") for k in range(40)}
    lib = make_library(layout, root=tmp_path / "photos")
    reference = make_library(layout, root=tmp_path / "reference")  # the same photos, indexed without a kill
    index_library(reference)
    expected = dict(zip(*Store(reference).fingerprints("lite0")))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    rng = random.Random(3)
    stored_counts = []
    journal = lib / ".imagecluster" / JOURNAL_NAME
    for kill in range(KILLS):
        before = file_version(journal)
        proc = subprocess.Popen([sys.executable, "-m", "imagecluster", "index", str(lib), "--batch-size", "4"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        if kill % 2:
            # Half the kills land while photos are being stored: once this run has appended to the
            # journal, a moment later (how long start-up takes depends on the machine's load).
            deadline = time.monotonic() + 300
            while file_version(journal) == before and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.5))
        else:
            time.sleep(rng.uniform(0.2, 6.0))  # the others anywhere, start-up included
        proc.kill()  # SIGKILL (nothing if the run already ended)
        proc.wait()
        paths, fps = Store(lib).fingerprints("lite0")  # loads after every kill
        assert len(paths) == len(set(paths))
        for path, vector in zip(paths, fps):
            np.testing.assert_allclose(vector, expected[path], atol=2e-3)
        stored_counts.append(len(paths))
    report = index_library(lib)  # resumes with only what is missing
    assert report.added == len(layout) - stored_counts[-1]
    paths, fps = Store(lib).fingerprints("lite0")
    assert sorted(paths) == sorted(expected)
    assert not list((lib / ".imagecluster").glob("damaged-*"))
    assert stored_counts[-1] > 0, stored_counts  # some kills landed after photos were stored
