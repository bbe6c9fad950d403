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

SCRIPT = textwrap.dedent(r"""
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
    filler = os.path.join(lib, "filler")
    with open(filler, "wb") as f:  # take every free block
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
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


def test_a_full_disk_keeps_the_store_and_says_so(tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to mount a small tmpfs in a private mount namespace")
    lib = tmp_path / "small"
    lib.mkdir()
    shell = 'mount -t tmpfs -o size=2m tmpfs "$1" && shift && exec "$@"'
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", shell, "sh", str(lib),
         sys.executable, "-c", SCRIPT, str(lib)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK") and "cannot write" in result.stdout
