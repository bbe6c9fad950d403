"""The tree's top folder gets the user's umask, like every folder inside it (it was 0700, from mkdtemp)."""

import os
import stat
from pathlib import Path

import pytest

from imagecluster import write_tree

# By path, not `from conftest import DATA`: in a full run that import can find tests/plugin_api/conftest.py.
DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_the_top_folder_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        out = write_tree([[DATA / "cat.jpg", DATA / "dog.jpg"]], tmp_path / "clusters")
    finally:
        os.umask(old)
    expected = 0o777 & ~umask
    assert stat.S_IMODE(out.stat().st_mode) == expected
    assert stat.S_IMODE((out / "cluster_with_2").stat().st_mode) == expected
