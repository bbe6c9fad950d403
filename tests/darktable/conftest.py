"""Fixtures of the darktable plugin's tests: real darktable runs in throw-away folders.

Tests marked ``darktable`` need Debian's ``darktable`` (``darktable-cli`` too),
``xvfb`` (``xvfb-run``, ``xauth``) and ``lua5.4``. Where one is missing they
are skipped, unless ``IMAGECLUSTER_REQUIRE_DARKTABLE=1`` (``.ci/run`` sets it):
then its absence fails them, so CI cannot pass without running them.

darktable never sees the user's files: every run gets its own ``--configdir``
and ``--library``, and HOME and the XDG folders point into the test's folder.
Lua code runs through ``--luacmd``, wrapped so that an error is printed
(``LUA ERROR ...``) and the GUI still quits instead of waiting forever.
"""

import contextlib
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagecluster.plugin_api._darktable import install_darktable_plugin

# The shared test support: a private bus, a real daemon on it, the test photos, polling.
from _support import bus as _support_bus
from _support import photos as _support_photos
from _support import poll as _support_poll
from _support import shared as _support_shared
from _support.processes import WORK_TIMEOUT

HERE = Path(__file__).parent
REPO = HERE.resolve().parents[1]
TOOLS = ("darktable", "darktable-cli", "xvfb-run", "xauth", "luac5.4", "lua5.4")
REQUIRE_VARIABLE = "IMAGECLUSTER_REQUIRE_DARKTABLE"
# One darktable run; generous for a loaded CI machine (a run takes 1-5 s here).
RUN_TIMEOUT = 300
# Printed by the wrapper once the test's Lua code has run (without or with an error).
LUA_DONE = "LUA DONE"
# Seconds darktable gets to exit after LUA_DONE (it takes about one here).
QUIT_GRACE = 60
# Runs killed after QUIT_GRACE: listed at the end of the test session, not hidden.
HUNG_AT_QUIT = []

XMP_NAMESPACES = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
}




def pytest_runtest_setup(item):
    """Skip a ``darktable`` test where its tools are missing; fail it instead when CI requires them."""
    if item.get_closest_marker("darktable") is None:
        return
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not missing:
        return
    message = f"needs {', '.join(missing)} (Debian: apt-get install darktable xvfb xauth lua5.4)"
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{REQUIRE_VARIABLE}=1 but this test {message}", pytrace=False)
    pytest.skip(message)


def pytest_terminal_summary(terminalreporter):
    """Say how often darktable hung at quit after the Lua code had finished (and was killed)."""
    if HUNG_AT_QUIT:
        terminalreporter.write_sep("-", f"darktable hung at quit {len(HUNG_AT_QUIT)} time(s) after the test's Lua "
                                        f"code had finished; killed after {QUIT_GRACE} s (darktable #17840)")
        for argv in HUNG_AT_QUIT:
            terminalreporter.write_line(argv)


def lua_string(text):
    """``text`` as a Lua string literal (UTF-8 kept as it is)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def lua_import(paths):
    """Lua that imports each photo into darktable's library."""
    return "".join(f"dt.database.import({lua_string(str(p))})\n" for p in paths)


def private_env(folder, **extra):
    """This process' environment with HOME and the XDG folders in ``folder``; imagecluster importable."""
    env = dict(os.environ)
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR"):
        path = folder / name.lower()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        env[name] = str(path)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for name in ("IMAGECLUSTER_DARKTABLE_COMMAND", "DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS",
                 "DBUS_STARTER_ADDRESS"):
        env.pop(name, None)  # no real screen, no real session bus; the tests give their own
    env.update(extra)
    return env


@dataclass
class DarktableRun:
    """What one darktable run printed (stdout holds Lua's ``print`` and, in darktable-cli, ``dt.print``)."""

    returncode: int
    stdout: str
    stderr: str
    #: The Lua code finished, then darktable hung on its way out and was killed (see ``Darktable._run``).
    hung_at_quit: bool = False

    def check(self):
        """This run, if darktable exited with 0 and the Lua code ran to its end without an error."""
        output = self.stdout + self.stderr
        assert self.returncode == 0 and LUA_DONE in self.stdout and "LUA ERROR" not in output, output
        return self

    def lines(self, prefix):
        return [line[len(prefix):].strip() for line in self.stdout.splitlines() if line.startswith(prefix)]


@dataclass
class Darktable:
    """One darktable configuration folder and library, and runs of darktable on them."""

    configdir: Path
    library: Path
    folder: Path
    env: dict
    #: The log of the daemon darktable talks to, if any: shown when a run does not finish.
    daemon_log: Callable[[], str] | None = None

    @classmethod
    def create(cls, folder, daemon_log=None, **env):
        folder.mkdir(parents=True, exist_ok=True)
        configdir = folder / "config"
        configdir.mkdir(exist_ok=True)
        return cls(configdir, folder / "library.db", folder, private_env(folder / "home", **env), daemon_log)

    @classmethod
    def with_plugin_for(cls, folder, shared):
        """darktable with the plugin installed, talking to ``shared``'s daemon through the real ``remote``."""
        darktable = cls.create(
            folder, daemon_log=shared.daemon.log, DBUS_SESSION_BUS_ADDRESS=shared.address,
            IMAGECLUSTER_DARKTABLE_COMMAND=f"{shlex.quote(sys.executable)} -m imagecluster",
        )
        install_darktable_plugin(configdir=darktable.configdir)
        return darktable

    def copy(self, folder):
        """The same configuration and library in ``folder``, to change without touching this one."""
        shutil.copytree(self.configdir, folder / "config")
        shutil.copy2(self.library, folder / "library.db")
        return Darktable(folder / "config", folder / "library.db", folder, dict(self.env), self.daemon_log)

    def cli(self, lua, **env):
        """Run ``lua`` in ``darktable-cli --core`` (no GUI); it also exports a tiny image, ignored."""
        source = self.folder / "cli-input.png"
        if not source.exists():
            _tiny_png(source)
        output = self.folder / "cli-output.jpg"
        output.unlink(missing_ok=True)
        argv = ["darktable-cli", source, output, "--core", "--configdir", self.configdir,
                "--library", self.library, "--luacmd", _wrapped(lua, quit_gui=False)]
        return self._run(argv, env)

    def gui(self, lua, **env):
        """Run ``lua`` in the darktable GUI on a virtual screen (Xvfb), then quit it."""
        argv = ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", "darktable", "--configdir", self.configdir,
                "--library", self.library, "--disable-opencl", "--luacmd", _wrapped(lua, quit_gui=True)]
        return self._run(argv, env)

    def _run(self, argv, env):
        # A session of its own: on a timeout, Xvfb and darktable go too, not only xvfb-run.
        proc = subprocess.Popen(
            [str(a) for a in argv], env=dict(self.env, **env), cwd=self.folder,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        output = _Output(proc)
        started = time.monotonic()
        done_at = None  # when the Lua code had finished (LUA_DONE printed)
        while proc.poll() is None:
            now = time.monotonic()
            if done_at is None and LUA_DONE in output.stdout():
                done_at = now
            if done_at is not None and now - done_at > QUIT_GRACE:
                # The Lua code ran to its end, and darktable then did not exit: its own
                # shutdown hang (darktable #17840, #18240: quitting soon after start). What
                # the test checks (tags, sidecars) is written by then; say so, and go on.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                output.finish()
                HUNG_AT_QUIT.append(" ".join(str(a) for a in argv[:6]))
                return DarktableRun(0, output.stdout(), output.stderr(), hung_at_quit=True)
            if now - started > RUN_TIMEOUT:
                # What was still running says where it waited (darktable itself, or the
                # `imagecluster remote` it started, and so the daemon): see the daemon's log too.
                running = _processes_of_session(proc.pid)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                output.finish()
                log = f"\nthe daemon's log:\n{self.daemon_log()}" if self.daemon_log else ""
                raise AssertionError(f"darktable did not finish within {RUN_TIMEOUT} s; still running:\n{running}\n"
                                     f"{output.stdout()}{output.stderr()}{log}")
            time.sleep(0.2)
        output.finish()
        return DarktableRun(proc.returncode, output.stdout(), output.stderr())

    def tags(self, prefix="imagecluster|"):
        """{tag name: set of photo paths} from darktable's SQLite (library.db and data.db)."""
        query = (
            "SELECT t.name, f.folder || '/' || i.filename FROM main.images AS i"
            " JOIN main.film_rolls AS f ON f.id = i.film_id"
            " JOIN main.tagged_images AS ti ON ti.imgid = i.id"
            " JOIN data.tags AS t ON t.id = ti.tagid WHERE substr(t.name, 1, ?) = ?"
        )
        with contextlib.closing(sqlite3.connect(f"file:{self.library}?mode=ro", uri=True)) as db:
            db.execute("ATTACH DATABASE ? AS data", (f"file:{self.configdir / 'data.db'}?mode=ro",))
            rows = db.execute(query, (len(prefix), prefix)).fetchall()
        tags = {}
        for name, path in rows:
            tags.setdefault(name, set()).add(path)
        return tags

    def tag_names(self, prefix="imagecluster|"):
        """Every tag darktable knows that starts with ``prefix``, attached or not."""
        with contextlib.closing(sqlite3.connect(f"file:{self.configdir / 'data.db'}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT name FROM tags WHERE substr(name, 1, ?) = ?", (len(prefix), prefix))
            return sorted(name for (name,) in rows)


class _Output:
    """A process' stdout and stderr, read as they come (so a run that hangs shows what it printed)."""

    def __init__(self, proc):
        self._proc = proc
        self._parts = {"stdout": [], "stderr": []}
        self._threads = [threading.Thread(target=self._read, args=(stream, self._parts[name]), daemon=True)
                         for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr))]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _read(stream, parts):
        for chunk in iter(lambda: stream.read1(65536), b""):
            parts.append(chunk)

    def finish(self):
        """Wait for the last bytes once the process is gone (its pipes close)."""
        for thread in self._threads:
            thread.join(timeout=30)
        self._proc.stdout.close()
        self._proc.stderr.close()

    def _text(self, name):
        return b"".join(self._parts[name]).decode("utf-8", "replace")

    def stdout(self):
        return self._text("stdout")

    def stderr(self):
        return self._text("stderr")


def _processes_of_session(session):
    """``ps`` lines of the processes in ``session``, with how long each has run."""
    ps = subprocess.run(["ps", "-ww", "-o", "pid,etime,stat,wchan:20,args", "-s", str(session)],
                        capture_output=True, text=True, check=False)
    return ps.stdout or ps.stderr


def _wrapped(lua, quit_gui):
    # Unbuffered: on a timeout the lines printed so far are kept, not lost with the killed process.
    body = f"""io.stdout:setvbuf("no")
local dt = require "darktable"
local ok, err = pcall(function()
{lua}
end)
if not ok then print("LUA ERROR " .. tostring(err)) end
print("{LUA_DONE}")
"""
    if quit_gui:
        body += "dt.gui.action('global/quit', 0, '', '', 1.0)\n"
    return body


def _tiny_png(path):
    from PIL import Image

    Image.new("RGB", (8, 8), (90, 90, 90)).save(path)


def sidecar_subjects(photo):
    """The hierarchical keywords (``lr:hierarchicalSubject``) of a photo's darktable sidecar, ``<photo>.xmp``."""
    tree = ET.parse(f"{photo}.xmp")
    items = tree.getroot().iterfind(".//lr:hierarchicalSubject/rdf:Bag/rdf:li", XMP_NAMESPACES)
    return sorted(item.text for item in items)


@pytest.fixture
def private_bus(tmp_path):
    """A private session bus where no daemon runs and none can be activated."""
    bus = _support_bus.PrivateBus(tmp_path / "bus")
    yield bus
    bus.stop()


@pytest.fixture(scope="module")
def darktable_daemon(tmp_path_factory):
    """The real daemon on a private bus, watching a library of real photos, all indexed.

    Like the plugin API tests' ``photo_daemon`` (the same photos, without the
    text file), but darktable writes sidecars into this library, so it is
    this module's own. ``photos`` lists the photo paths.
    """
    folder = tmp_path_factory.mktemp("darktable_daemon")
    library = folder / "photos"
    photos = []
    for seed, (name, source) in enumerate(sorted(_support_photos.PHOTOS.items())):
        path = library / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _support_photos.camera_moved(_support_photos.DATA / source, seed).save(path, quality=88)
        photos.append(path)
    with indexed_daemon(folder, library, len(photos)) as shared:
        shared.photos = photos
        yield shared


@contextlib.contextmanager
def indexed_daemon(folder, library, count):
    """The real daemon on a private bus in ``folder``, watching ``library``, once it indexed ``count`` files."""
    config = folder / "daemon.toml"
    config.write_text("settle_seconds = 0.2\n")

    def argv(lib):
        return [sys.executable, "-m", "imagecluster", "daemon", "-v", "--library", str(lib), "--config", str(config)]

    with _support_shared.shared_daemon(folder, library, argv) as shared:
        with shared.client() as client:
            indexed = _support_poll.until(
                lambda: client.wait_idle(10) and client.status().indexed == count,
                WORK_TIMEOUT, what="indexing the photos",
            )
        assert indexed, shared.daemon.log()
        yield shared


@pytest.fixture(scope="session")
def darktable_helpers():
    """The helpers of this folder, for test modules (which cannot import a conftest)."""
    return _Helpers


class _Helpers:
    Darktable = Darktable
    indexed_daemon = staticmethod(indexed_daemon)
    lua_import = staticmethod(lua_import)
    lua_string = staticmethod(lua_string)
    sidecar_subjects = staticmethod(sidecar_subjects)
