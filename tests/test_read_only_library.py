"""A read-only library (a mounted archive, a DVD): indexed and clustered, its store in the user's data folder.

As root the library is bind-mounted read-only in a private mount namespace
(``unshare -m``), so even root cannot write it; as another user the folder is
made read-only with chmod.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imagecluster.store import store_folder


def read_only(lib, command):
    """Run ``command`` (a list) with ``lib`` read-only; returns the CompletedProcess."""
    if os.geteuid() != 0:
        for folder in [lib, *(p for p in lib.rglob("*") if p.is_dir())]:
            folder.chmod(0o555)
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=600)
        finally:
            for folder in [lib, *(p for p in lib.rglob("*") if p.is_dir())]:
                folder.chmod(0o755)
    if not shutil.which("unshare"):
        pytest.skip("needs unshare (util-linux) to mount the library read-only as root")
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(lib), *command],
                          capture_output=True, text=True, timeout=600)


def test_a_read_only_library_is_indexed_and_clustered_with_its_store_elsewhere(burst_library, tmp_path):
    lib = burst_library
    before = {p: p.read_bytes() for p in lib.rglob("*") if p.is_file()}
    data_home = tmp_path / "data"
    out = tmp_path / "tree"
    env_cmd = ["env", f"XDG_DATA_HOME={data_home}", sys.executable, "-m", "imagecluster", "cluster", str(lib),
               "--out", str(out)]
    first = read_only(lib, env_cmd)
    assert first.returncode == 0, first.stderr
    assert "6 new" in first.stdout and "2 clusters with 6 photos" in first.stdout
    assert not (lib / ".imagecluster").exists()  # nothing written into the library
    assert {p: p.read_bytes() for p in lib.rglob("*") if p.is_file()} == before
    (store,) = (data_home / "imagecluster" / "stores").iterdir()
    assert store.name.startswith("photos-") and (store / "fingerprints.pk").is_file()
    assert len(list(out.rglob("*.jpg"))) == 6

    second = read_only(lib, env_cmd)  # the store is found again: nothing fingerprinted twice
    assert second.returncode == 0, second.stderr
    assert "0 new, 0 changed, 6 unchanged" in second.stdout


def test_store_folder_rules(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    assert store_folder(lib) == lib / ".imagecluster"  # writable
    assert store_folder(tmp_path / "missing") == tmp_path / "missing" / ".imagecluster"
    elsewhere = store_folder(Path("/proc/1"), environ={"XDG_DATA_HOME": str(tmp_path)})  # no one may write there
    assert elsewhere.parent == tmp_path / "imagecluster" / "stores" and elsewhere.name.startswith("1-")
