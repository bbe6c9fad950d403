"""A full disk while the store is written: a clear error, the previous store intact, and it works once there is room.

As root the library lives on a 2 MB tmpfs in a private mount namespace
(``unshare -m``), so the disk really fills; elsewhere the test skips.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

# Prepended to each script run on the small tmpfs.
FILL = textwrap.dedent(r"""
    import os

    def fill(folder, leave=0):
        # Take every free block of the file system, then give ``leave`` bytes back.
        with open(os.path.join(folder, "filler"), "wb") as f:
            try:
                while True:
                    f.write(bytes(65536))
                    f.flush()
            except OSError:
                pass
            f.truncate(max(0, f.tell() - leave))
        return f.name
""")

SCRIPT = FILL + textwrap.dedent(r"""
    import os, sys
    import numpy as np
    from imagecluster import Store, StoreError

    lib = sys.argv[1]
    rng = np.random.default_rng(0)
    def batch(start, n):
        return [(f"p{k}.jpg", k, k, rng.normal(size=1280)) for k in range(start, start + n)]

    store = Store(lib)
    store.put("m", batch(0, 100))
    store.compact()
    kept = sorted(store.entries("m"))
    filler = fill(lib)
    errors = []
    for start in (100, 200):
        try:
            store.put("m", batch(start, 100))
        except StoreError as exc:
            errors.append(str(exc))
    try:
        store.compact()
    except StoreError as exc:
        errors.append(str(exc))
    assert errors and all("No space left on device" in e for e in errors), errors
    fresh = Store(lib)
    assert sorted(fresh.entries("m")) == kept, "the store changed on a full disk"
    assert not [n for n in os.listdir(os.path.join(lib, ".imagecluster")) if n.endswith(".tmp")]
    os.unlink(filler)  # room again: the same writes work
    store.put("m", batch(100, 100))
    store.compact()
    assert len(Store(lib).entries("m")) == 200
    print("OK", errors[0])
""")


# The daemon's file-backed store: a change made with room for its journal record but not for the
# temporary file of the matrix copy goes to ordinary memory (never a SIGBUS at a later write), loses nothing.
FILE_BACKED_SCRIPT = FILL + textwrap.dedent(r"""
    import logging, os, sys
    import numpy as np
    import imagecluster._store_matrix as store_matrix
    import imagecluster.store as store_module
    from imagecluster import Store
    from imagecluster._mapped import mapping_of

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    store_module.FILE_BACKED_MIN_BYTES = 0
    store_matrix.MAX_DIRTY = 0  # the first change of a loaded row copies the matrix
    lib = sys.argv[1]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 1280))
    Store(lib).put("m", [(f"p{k}.jpg", k, k, vectors[k]) for k in range(299)])
    Store(lib).compact()
    fill(lib, leave=65536)  # room for a journal record, not for a copy of the matrix
    store = Store(lib, file_backed=True)
    store.put("m", [("p299.jpg", 299, 299, vectors[299])])  # a new photo: into the spare rows, no copy
    store.put("m", [("p0.jpg", 1000, 0, vectors[0])])  # a loaded row changes: the matrix is copied
    assert mapping_of(store.view("m").matrix) is None  # the copy is in ordinary memory
    store.release_memory()
    paths, fps = Store(lib).fingerprints("m")
    assert len(paths) == 300 and np.array_equal(store.fingerprints("m")[1], fps)
    print("OK")
""")


def in_small_tmpfs(tmp_path, script):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to mount a small tmpfs in a private mount namespace")
    lib = tmp_path / "small"
    lib.mkdir()
    shell = 'mount -t tmpfs -o size=2m tmpfs "$1" && shift && exec "$@"'
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", shell, "sh", str(lib),
         sys.executable, "-c", script, str(lib)],
        capture_output=True, text=True, timeout=300,
    )


def test_a_full_disk_keeps_the_store_and_says_so(tmp_path):
    result = in_small_tmpfs(tmp_path, SCRIPT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK") and "cannot write" in result.stdout


def test_a_full_disk_keeps_a_file_backed_change_in_memory(tmp_path):
    result = in_small_tmpfs(tmp_path, FILE_BACKED_SCRIPT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "OK"
    assert "cannot keep fingerprints in a temporary file" in result.stderr
