"""A foreign folder where the tree should go: the core's message names no command-line option (the daemon
sends it over D-Bus, where there is no --out); the command adds its own."""

from pathlib import Path

import pytest

from imagecluster import NotOurTree, write_tree
from imagecluster.cli import main

# By path, not `from conftest import DATA`: in a full run that import can find tests/plugin_api/conftest.py.
DATA = Path(__file__).parent / "data"


def test_the_message_fits_every_caller(tmp_path, capsys):
    foreign = tmp_path / "albums"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(NotOurTree) as excinfo:
        write_tree([[DATA / "cat.jpg", DATA / "dog.jpg"]], foreign)
    assert "Choose another folder for the cluster tree, or remove it yourself." in str(excinfo.value)
    assert "--out" not in str(excinfo.value)

    (tmp_path / "photos").mkdir()
    assert main(["cluster", str(tmp_path / "photos"), "--out", str(foreign)]) == 1
    err = capsys.readouterr().err
    assert "not written by imagecluster" in err and err.endswith("(--out OUT chooses the folder)\n")
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
