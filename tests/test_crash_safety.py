"""Crash safety, measured: a writer SIGKILLed at random moments and inside appends and compactions.

A child process writes batches of fingerprints into a real store (and
compacts now and then), printing ``DONE n`` after each ``put`` returned. The
test kills it with SIGKILL, 24 times: at random moments, and at moments
chosen exactly by wrapping the child's ``os.write``, ``os.fsync`` and
``os.replace`` (a torn journal record, a record written but not synced, a
compaction before and after its rename). After each kill the store must
load, hold every batch whose put returned, with exactly its fingerprints,
mix nothing between photos, and take new writes (the next child resumes).
"""

import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from imagecluster import Store

DIM = 16
BATCH = 5

CHILD = textwrap.dedent(r"""
    import os, sys, time
    import numpy as np
    import imagecluster.store as store_module
    from imagecluster import Store

    lib, start, count, stop_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    DIM, BATCH = {DIM}, {BATCH}

    def vectors(batch):
        out = []
        for k in range(BATCH):
            v = np.full(DIM, 0.01, np.float32)
            v[(batch * BATCH + k) % DIM] = 1.0 + (batch * BATCH + k) / 1e4  # tells the photo apart
            out.append((f"b{{batch:04d}}/p{{k}}.jpg", batch, k, v))
        return out

    def halt(where):
        print("INSIDE", where, flush=True)
        time.sleep(60)

    calls = {{"write": 0, "replace": 0, "fsync": 0}}
    real_write, real_replace, real_fsync = os.write, os.replace, os.fsync

    def write(fd, data):
        calls["write"] += 1
        if stop_at == "torn-append" and calls["write"] == 3:
            real_write(fd, bytes(data)[: len(data) // 2])
            halt("torn-append")
        return real_write(fd, data)

    def fsync(fd):
        calls["fsync"] += 1
        if stop_at == "unsynced-append" and calls["fsync"] == 3:
            halt("unsynced-append")
        return real_fsync(fd)

    def replace(a, b):
        calls["replace"] += 1
        if stop_at == "compact-before-rename":
            halt("compact-before-rename")
        real_replace(a, b)
        if stop_at == "compact-after-rename":
            halt("compact-after-rename")

    store_module.os.write, store_module.os.fsync, store_module.os.replace = write, fsync, replace
    store = Store(lib)
    for batch in range(start, start + count):
        store.put("m", vectors(batch))
        print("DONE", batch, flush=True)
        if batch % 4 == 3:
            store.compact()
""").format(DIM=DIM, BATCH=BATCH)


def expected_vector(batch, k):
    v = np.full(DIM, 0.01, np.float32)
    v[(batch * BATCH + k) % DIM] = 1.0 + (batch * BATCH + k) / 1e4
    return np.asarray(v, np.float16).astype(np.float32)


def run_child(lib, start, count, stop_at, kill_after=None):
    """Run the writer; kill it with SIGKILL at its INSIDE line or after ``kill_after`` s; return batches done."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(lib), str(start), str(count), stop_at],
                            stdout=subprocess.PIPE)
    done = []
    deadline = time.monotonic() + (kill_after if kill_after is not None else 60)
    try:
        buffer = ""
        while True:
            if select.select([proc.stdout], [], [], 0.002)[0]:
                buffer += os.read(proc.stdout.fileno(), 1 << 16).decode()
            lines, _, buffer = buffer.rpartition("\n")
            for line in lines.splitlines():
                if line.startswith("DONE"):
                    done.append(int(line.split()[1]))
                elif line.startswith("INSIDE"):
                    os.kill(proc.pid, signal.SIGKILL)
                    return done, line.split()[1]
            if proc.poll() is not None:
                return done, "finished"
            if time.monotonic() > deadline:
                os.kill(proc.pid, signal.SIGKILL)
                return done, "random"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def check(lib, acknowledged):
    store = Store(lib)
    paths, fps = store.fingerprints("m")
    assert len(paths) == len(set(paths))
    got = dict(zip(paths, fps))
    for batch in acknowledged:
        for k in range(BATCH):
            path = f"b{batch:04d}/p{k}.jpg"
            assert path in got, f"{path}: its put returned, but it is not in the store"
    for path, vector in got.items():  # nothing mixed between photos, and only what a child wrote
        batch, k = int(path[1:5]), int(path[-5])
        np.testing.assert_array_equal(vector, expected_vector(batch, k))
    entries = store.entries("m")
    assert all(tuple(entries[p]) == (int(p[1:5]), int(p[-5])) for p in paths)
    return len(paths)


@pytest.mark.parametrize("seed", [1])
def test_kills_at_random_and_chosen_moments_lose_nothing_acknowledged(tmp_path, seed):
    rng = random.Random(seed)
    moments = ["torn-append", "unsynced-append", "compact-before-rename", "compact-after-rename"] * 3
    moments += ["random"] * 12
    rng.shuffle(moments)
    acknowledged, start, kinds = [], 0, []
    for moment in moments:
        kill_after = rng.uniform(0.3, 1.5) if moment == "random" else None
        done, where = run_child(tmp_path, start, 40, moment if moment != "random" else "none", kill_after)
        kinds.append(where)
        acknowledged += done
        start += 40
        check(tmp_path, acknowledged)
    assert len(kinds) >= 20 and kinds.count("random") + kinds.count("finished") <= 12
    for moment in ("torn-append", "unsynced-append", "compact-before-rename", "compact-after-rename"):
        assert kinds.count(moment) == 3, kinds  # each chosen moment was really reached
    stored = check(tmp_path, acknowledged)
    done, _ = run_child(tmp_path, start, 8, "none")  # resumes after every kind of crash
    assert check(tmp_path, acknowledged + done) == stored + 8 * BATCH
    assert not list((tmp_path / ".imagecluster").glob("damaged-*"))  # a crash is not damage
