"""``imagecluster install-darktable-plugin``: the plugin file and the luarc line, idempotently."""

import subprocess
import sys
from pathlib import Path

import pytest

from imagecluster import ImageClusterError, InvalidParameter
from imagecluster.plugin_api._darktable import (
    REQUIRE_LINE,
    InstallError,
    darktable_configdir,
    install_darktable_plugin,
    plugin_source,
    plugin_warnings,
)


def test_installs_plugin_and_luarc_once(tmp_path):
    configdir = tmp_path / "darktable"
    configdir.mkdir()
    plugin, luarc = install_darktable_plugin(configdir=configdir)
    assert plugin.path == configdir / "lua" / "contrib" / "imagecluster.lua" and plugin.changed
    assert luarc.path == configdir / "luarc" and luarc.changed
    assert plugin.path.read_text(encoding="utf-8") == plugin_source()
    assert "function imagecluster.cluster(sim)" in plugin_source()
    assert luarc.path.read_text() == REQUIRE_LINE + "\n"

    again = install_darktable_plugin(configdir=configdir)
    assert [(f.path, f.changed) for f in again] == [(plugin.path, False), (luarc.path, False)]
    assert luarc.path.read_text() == REQUIRE_LINE + "\n"


def test_keeps_the_users_luarc(tmp_path):
    configdir = tmp_path / "darktable"
    configdir.mkdir()
    (configdir / "luarc").write_text('require "tools/script_manager"')  # no final newline
    install_darktable_plugin(configdir=configdir)
    assert (configdir / "luarc").read_text() == f'require "tools/script_manager"\n{REQUIRE_LINE}\n'

    # A require the user wrote another way counts; a commented-out one does not.
    (configdir / "luarc").write_text("require('contrib/imagecluster')\n")
    assert not install_darktable_plugin(configdir=configdir)[1].changed
    (configdir / "luarc").write_text('-- require "contrib/imagecluster"\n')
    assert install_darktable_plugin(configdir=configdir)[1].changed
    assert (configdir / "luarc").read_text() == f'-- require "contrib/imagecluster"\n{REQUIRE_LINE}\n'


def test_replaces_an_old_plugin(tmp_path):
    configdir = tmp_path / "darktable"
    old = configdir / "lua" / "contrib" / "imagecluster.lua"
    old.parent.mkdir(parents=True)
    old.write_text("-- an older version\n")
    plugin, _ = install_darktable_plugin(configdir=configdir)
    assert plugin.changed and old.read_text(encoding="utf-8") == plugin_source()


def test_a_symlinked_luarc_stays_a_symlink(tmp_path):
    configdir = tmp_path / "darktable"
    configdir.mkdir()
    kept = tmp_path / "dotfiles" / "luarc"
    kept.parent.mkdir()
    kept.write_text('require "mine"\n')
    (configdir / "luarc").symlink_to(kept)
    install_darktable_plugin(configdir=configdir)
    assert (configdir / "luarc").is_symlink()
    assert kept.read_text() == f'require "mine"\n{REQUIRE_LINE}\n'


def test_default_configdir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert darktable_configdir() == tmp_path / "xdg" / "darktable"
    plugin, luarc = install_darktable_plugin()  # created: darktable may never have run
    assert plugin.path == tmp_path / "xdg" / "darktable" / "lua" / "contrib" / "imagecluster.lua"
    assert luarc.path.is_file()

    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert darktable_configdir() == tmp_path / "home" / ".config" / "darktable"


@pytest.mark.parametrize("bad", ["", "missing", "a-file"])
def test_bad_configdir(tmp_path, bad):
    (tmp_path / "a-file").write_text("")
    configdir = bad and tmp_path / bad
    with pytest.raises(InvalidParameter) as caught:
        install_darktable_plugin(configdir=configdir)
    assert isinstance(caught.value, ValueError) and "configdir" in str(caught.value)
    assert not (tmp_path / "missing").exists()


def test_unwritable_configdir(tmp_path):
    configdir = tmp_path / "darktable"
    configdir.mkdir()
    (configdir / "lua").write_text("a file where the lua folder goes\n")
    with pytest.raises(InstallError) as caught:
        install_darktable_plugin(configdir=configdir)
    assert isinstance(caught.value, (ImageClusterError, OSError)) and "lua" in str(caught.value)


def test_warns_when_imagecluster_is_not_on_path(tmp_path):
    (tmp_path / "imagecluster").write_text("#!/bin/sh\n")
    (tmp_path / "imagecluster").chmod(0o755)
    assert plugin_warnings(environ={"PATH": str(tmp_path)}) == []
    assert plugin_warnings(environ={"PATH": "", "IMAGECLUSTER_DARKTABLE_COMMAND": "/x/imagecluster"}) == []
    [warning] = plugin_warnings(environ={"PATH": str(tmp_path / "nothing-here")})
    assert "not on PATH" in warning and "IMAGECLUSTER_DARKTABLE_COMMAND" in warning


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "imagecluster", *map(str, args)], capture_output=True, text=True)


def test_command(tmp_path):
    configdir = tmp_path / "darktable"
    configdir.mkdir()
    result = _cli("install-darktable-plugin", "--configdir", configdir)
    assert result.returncode == 0, result.stderr
    assert f"wrote {configdir / 'lua' / 'contrib' / 'imagecluster.lua'}" in result.stdout
    assert f"wrote {configdir / 'luarc'}" in result.stdout and "cluster similar" in result.stdout
    result = _cli("install-darktable-plugin", "--configdir", configdir)
    assert result.returncode == 0 and f"unchanged {configdir / 'luarc'}" in result.stdout

    result = _cli("install-darktable-plugin", "--configdir", tmp_path / "missing")
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_the_guide_quotes_the_plugins_words():
    """doc/darktable.rst names the button, the variable and the messages as the plugin has them."""
    doc = Path(__file__).parents[2] / "doc"
    guide = (doc / "darktable.rst").read_text(encoding="utf-8")
    source = plugin_source()
    for in_source, in_guide in [
        ('"cluster similar"', "cluster similar"),
        ('"imagecluster: similarity (sim)"', "imagecluster: similarity (sim)"),
        ('"IMAGECLUSTER_DARKTABLE_COMMAND"', "IMAGECLUSTER_DARKTABLE_COMMAND"),
        ('"imagecluster: daemon not available: "', "imagecluster: daemon not available: "),
        ('"imagecluster is not installed: cannot run', "imagecluster is not installed: cannot run"),
        ('"imagecluster failed: "', "imagecluster failed: "),
        ('"imagecluster: no clusters at sim %s; try a lower sim"',
         "imagecluster: no clusters at sim S; try a lower sim"),
        ("of the clusters %s not in darktable's library", "of the clusters are not in darktable's library"),
        ('"imagecluster|cluster "', "imagecluster|cluster NNN"),
    ]:
        assert in_source in source, in_source
        assert in_guide in guide, in_guide
    assert "image:: darktable-lighttable.png" in guide and (doc / "darktable-lighttable.png").is_file()
