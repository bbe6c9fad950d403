"""install-service and the service files: what is written, where, and that systemd accepts it.

The unit is also checked with ``systemd-analyze verify --user``; both files
are used for real, under a real systemd user manager, by test_systemd_user.py
(``systemctl --user start``, D-Bus activation through systemd, restarts).
"""

import configparser
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imagecluster.cli import main
from imagecluster.daemon._install import ACTIVATION_FILE, UNIT_FILE, install_service, render

REPO = Path(__file__).resolve().parents[2]


def parse(text):
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(text)
    return parser


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    """Empty XDG_CONFIG_HOME and XDG_DATA_HOME; returns (unit folder, activation folder)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "config" / "systemd" / "user", tmp_path / "data" / "dbus-1" / "services"


def test_install_service_writes_both_files_for_this_python(xdg, capsys):
    unit_dir, dbus_dir = xdg
    assert main(["install-service"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {unit_dir / UNIT_FILE}\n" in out
    assert f"wrote {dbus_dir / ACTIVATION_FILE}\n" in out
    assert "next: systemctl --user daemon-reload && systemctl --user enable --now imagecluster" in out
    assert "the daemon has no library yet: create" in out  # no config file here

    unit = parse((unit_dir / UNIT_FILE).read_text())
    command = f"{sys.executable} -m imagecluster daemon"
    assert dict(unit["Service"]) == {
        "Type": "dbus", "BusName": "org.imagecluster.ImageCluster1", "ExecStart": command,
        "Restart": "on-failure", "RestartPreventExitStatus": "2 3", "Nice": "10",
        "IOSchedulingClass": "idle", "TimeoutStopSec": "20",
    }
    assert unit["Install"]["WantedBy"] == "default.target"
    activation = parse((dbus_dir / ACTIVATION_FILE).read_text())
    assert dict(activation["D-BUS Service"]) == {
        "Name": "org.imagecluster.ImageCluster1", "Exec": command, "SystemdService": "imagecluster.service",
    }


def test_install_service_is_idempotent(xdg, capsys, tmp_path):
    unit_dir, dbus_dir = xdg
    config = tmp_path / "config" / "imagecluster" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'libraries = ["{tmp_path}"]\n')
    assert main(["install-service"]) == 0
    before = {p: p.read_bytes() for p in (unit_dir / UNIT_FILE, dbus_dir / ACTIVATION_FILE)}
    capsys.readouterr()
    assert main(["install-service"]) == 0
    out = capsys.readouterr().out
    assert out.count("unchanged ") == 2 and "wrote" not in out and "warning" not in out
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(os.listdir(unit_dir)) == [UNIT_FILE]  # no temporary files left


def test_install_service_folders_can_be_chosen(tmp_path, xdg, capsys):
    assert main(["install-service", "--unit-dir", str(tmp_path / "u"), "--dbus-dir", str(tmp_path / "d")]) == 0
    assert (tmp_path / "u" / UNIT_FILE).is_file() and (tmp_path / "d" / ACTIVATION_FILE).is_file()
    assert not any(p.exists() for p in xdg)


def test_paths_are_quoted_for_systemd_and_dbus(tmp_path):
    python = "/opt/my env/bin/python3"
    files = install_service(
        unit_dir=tmp_path, dbus_dir=tmp_path, python=python, daemon_args=["--config", "/home/a%b/c.toml"],
    )
    assert [f.changed for f in files] == [True, True]
    exec_start = parse((tmp_path / UNIT_FILE).read_text())["Service"]["ExecStart"]
    assert shlex.split(exec_start) == [python, "-m", "imagecluster", "daemon", "--config", "/home/a%%b/c.toml"]
    exec_ = parse((tmp_path / ACTIVATION_FILE).read_text())["D-BUS Service"]["Exec"]
    assert shlex.split(exec_) == [python, "-m", "imagecluster", "daemon", "--config", "/home/a%b/c.toml"]


def test_the_repository_files_are_the_templates_for_the_system_python():
    for name in (UNIT_FILE, ACTIVATION_FILE):
        assert (REPO / "systemd" / name).read_text() == render(name, python="/usr/bin/python3"), name


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    units = tmp_path / "units"
    install_service(unit_dir=units, dbus_dir=tmp_path / "dbus")  # ExecStart: this Python, which exists
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), SYSTEMD_LOG_LEVEL="notice")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--user", str(units / UNIT_FILE)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # any warning fails the test


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a bad value only warns (status 0), and stderr shows it."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    unit = tmp_path / UNIT_FILE
    unit.write_text(render(UNIT_FILE).replace("Type=dbus", "Type=dbuss"))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--user", str(unit)],
        capture_output=True, text=True, env=dict(os.environ, XDG_RUNTIME_DIR=str(runtime)), timeout=60,
    )
    assert "dbuss" in result.stderr
