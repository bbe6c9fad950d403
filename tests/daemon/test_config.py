"""The daemon's Config: the XDG config file merged with command-line flags, checked once."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagecluster.cli import main
from imagecluster.daemon._config import Config, ConfigError, default_config_path, load_config


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    """An empty XDG_CONFIG_HOME; returns the config file's path (not yet written)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "imagecluster" / "config.toml"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_and_normalised_paths(tmp_path, xdg):
    config = load_config(libraries=[str(tmp_path / "a" / ".." / "photos")])
    assert config == Config(
        libraries=(tmp_path / "photos",), sim=0.7, model="lite0", cut="absolute", min_size=2,
        settle_seconds=1.0, worker_idle_seconds=60.0, batch_size=32, rescan_seconds=30.0,
        out=(tmp_path / "photos" / "clusters",),
    )
    assert config.tree_folder(tmp_path / "photos") == tmp_path / "photos" / "clusters"
    with pytest.raises(AttributeError):
        config.sim = 0.5  # frozen


def test_the_file_is_read_and_flags_win(tmp_path, xdg, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write(xdg, """
libraries = ["~/Pictures", { path = "/mnt/photos", out = "/mnt/photos/groups" }]
sim = 0.8
model = "vgg16"
min_size = 3
settle_seconds = 0.5
gallery = false
""")
    config = load_config()
    assert config.gallery is False
    assert config.libraries == (tmp_path / "home" / "Pictures", Path("/mnt/photos"))
    assert config.out == (tmp_path / "home" / "Pictures" / "clusters", Path("/mnt/photos/groups"))
    assert (config.sim, config.model, config.min_size, config.settle_seconds) == (0.8, "vgg16", 3, 0.5)

    config = load_config(libraries=[str(tmp_path / "other")], sim=0.6, model=None)
    assert config.libraries == (tmp_path / "other",)  # --library replaces the file's list
    assert config.out == (tmp_path / "other" / "clusters",)
    assert (config.sim, config.model, config.min_size) == (0.6, "vgg16", 3)


def test_an_explicit_config_file_must_exist(tmp_path, xdg):
    with pytest.raises(ConfigError, match="cannot read the config file .*nope.toml"):
        load_config(tmp_path / "nope.toml", libraries=[str(tmp_path)])
    path = write(tmp_path / "mine.toml", f'libraries = ["{tmp_path}"]\n')
    assert load_config(path).libraries == (tmp_path,)


def test_xdg_config_home_default():
    assert default_config_path({"XDG_CONFIG_HOME": "/x/y"}) == Path("/x/y/imagecluster/config.toml")
    home = Path(os.path.expanduser("~"))
    assert default_config_path({}) == home / ".config" / "imagecluster" / "config.toml"
    assert default_config_path({"XDG_CONFIG_HOME": "relative"}) == home / ".config" / "imagecluster" / "config.toml"


@pytest.mark.parametrize("text, message", [
    ("libraries = ['/p']\nsimm = 0.7\n", r"unknown key 'simm'; known keys: batch_size, cut, gallery, libraries, .*sim"),
    ("libraries = ['/p']\nsim = 1.5\n", r"config.toml: sim must be between 0 and 1, got 1.5"),
    ("libraries = ['/p']\nsim = nan\n", r"sim must be between 0 and 1"),
    ("libraries = ['/p']\nsim = '0.7'\n", r"sim must be a number between 0 and 1, got '0.7'"),
    ("libraries = ['/p']\nmodel = 'resnet'\n", r"model must be one of lite0, vgg16, got 'resnet'"),
    ("libraries = ['/p']\nbatch_size = 0\n", r"batch_size must be at least 1"),
    ("libraries = ['/p']\nsettle_seconds = true\n", r"settle_seconds must be a number"),
    ("libraries = ['/p']\ngallery = 'no'\n", r"gallery must be true or false, got 'no'"),
    ("libraries = ['/p']\ngallery = 0\n", r"gallery must be true or false, got 0"),
    ("libraries = ['photos']\n", r"library 'photos' must be an absolute path \(or start with ~\)"),
    ("libraries = '/p'\n", r"libraries must be a list of folders"),
    ("libraries = [{ path = '/p', output = '/o' }]\n", r"a library table takes the keys path \(required\) and out"),
    ("libraries = ['/p', '/p/2024']\n", r"library /p/2024 is inside library /p"),
    ("libraries = ['/p', '/p/']\n", r"library /p is given twice"),
    ("sim = 0.7\n", r"no library: pass --library DIR or add libraries = \[\"~/Pictures\"\] to .*config.toml"),
    ("libraries = [\n", r"config.toml: not valid TOML"),
])
def test_bad_settings_are_named(xdg, text, message):
    write(xdg, text)
    with pytest.raises(ConfigError, match=message):
        load_config()


def test_no_library_at_all(xdg):
    with pytest.raises(ConfigError, match=r"no library: pass --library DIR or add libraries = .* to .*config.toml"):
        load_config()


def test_cli_daemon_reports_config_mistakes_as_usage_errors(xdg, capsys):
    assert main(["daemon"]) == 2
    assert "imagecluster: error: no library: pass --library DIR" in capsys.readouterr().err
    write(xdg, "libraries = ['/p']\nsim = 2\n")
    assert main(["daemon"]) == 2
    assert "sim must be between 0 and 1, got 2" in capsys.readouterr().err


def test_the_cluster_command_does_not_import_the_daemon():
    code = (
        "import sys; from imagecluster import cli; cli._build_parser().parse_args(['cluster', '.']);"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('dbus_fast', 'watchdog')"
        " or m.startswith('imagecluster.daemon')]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_tree_folder_inside_a_library_must_be_new_empty_or_a_tree(tmp_path, xdg, capsys):
    lib = tmp_path / "photos"
    (lib / "2024").mkdir(parents=True)
    (lib / "2024" / "beach.jpg").write_bytes(b"a photo the indexer must not lose")
    write(xdg, f"libraries = [{{ path = '{lib}', out = '{lib / '2024'}' }}]\n")
    with pytest.raises(ConfigError, match=r"out: .*2024 is inside the library .*photos and was not written"):
        load_config()
    assert main(["daemon"]) == 2  # stops at start, before any indexing
    assert f"{lib / '2024'} is inside the library" in capsys.readouterr().err
    (lib / "clusters").mkdir()
    (lib / "clusters" / "mine.txt").write_text("the default tree folder, taken by the user")
    with pytest.raises(ConfigError, match="clusters is inside the library"):
        load_config(libraries=[str(lib)])
    # new, or outside every library (checked only when a tree is written there): accepted
    assert load_config(libraries=[str(lib / "2024")]).out == (lib / "2024" / "clusters",)
    write(xdg, f"libraries = [{{ path = '{lib}', out = '{lib / 'groups'}' }}]\n")
    assert load_config().out == (lib / "groups",)
    write(xdg, f"libraries = [{{ path = '{lib / '2024'}', out = '{lib / 'clusters'}' }}]\n")
    assert load_config().out == (lib / "clusters",)
