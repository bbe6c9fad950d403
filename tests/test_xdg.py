"""``_xdg``: the user's folders, and the atomic write the installers share."""

import os
import stat

import pytest

from imagecluster._exceptions import InstallError
from imagecluster._xdg import read_text, write_if_changed, xdg_config_home, xdg_data_home

pytestmark = pytest.mark.mockbus


def test_the_xdg_variables_and_their_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert xdg_config_home({"XDG_CONFIG_HOME": "/c"}) == type(tmp_path)("/c")
    assert xdg_config_home({}) == tmp_path / ".config"
    assert xdg_config_home({"XDG_CONFIG_HOME": "relative"}) == tmp_path / ".config"  # as the spec says
    assert xdg_data_home({"XDG_DATA_HOME": ""}) == tmp_path / ".local" / "share"


def test_write_if_changed_writes_once_with_mode_0644(tmp_path):
    path = tmp_path / "a" / "b" / "unit.service"
    first = write_if_changed(path, "text\n")
    assert first.changed and path.read_text() == "text\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not write_if_changed(path, "text\n").changed
    assert write_if_changed(path, "other\n").changed and read_text(path) == "other\n"
    assert [p.name for p in path.parent.iterdir()] == ["unit.service"]  # no temporary file left


def test_a_symlinked_file_keeps_its_link(tmp_path):
    (tmp_path / "dotfiles").mkdir()
    real = tmp_path / "dotfiles" / "config.toml"
    real.write_text("old")
    os.symlink(real, tmp_path / "config.toml")
    write_if_changed(tmp_path / "config.toml", "new")
    assert (tmp_path / "config.toml").is_symlink() and real.read_text() == "new"


def test_read_text_of_nothing_and_of_what_cannot_be_read(tmp_path):
    assert read_text(tmp_path / "missing") == ""
    (tmp_path / "binary").write_bytes(b"\xff\xfe")
    with pytest.raises(InstallError, match="cannot read"):
        read_text(tmp_path / "binary")


def test_a_folder_that_cannot_be_written_is_an_install_error(tmp_path):
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(InstallError, match="cannot write"):
        write_if_changed(tmp_path / "file" / "unit.service", "x")
