"""Fixtures that fail a test which leaves threads or child processes behind.

* Threads: checked at once when the test ends, without grace: a thread still
  running then was not stopped by the code that started it.
* Child processes: a test's own children (a daemon, a bus, a command) must be
  gone when its fixtures are torn down. Inference workers (multiprocessing
  children) start lazily, inside the first test that uses a module's shared
  worker, so they are checked when the module ends. Processes of
  session-wide fixtures (the shared daemons, started by whichever test needs
  them first) are checked when the session ends. A leaked process is killed,
  then reported.
  multiprocessing's resource tracker lives as long as the interpreter and is
  not counted.
"""

import contextlib
import os
import signal
import threading

import pytest

from .processes import SESSION_PROCESSES, children

_LIFELONG = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _live_children():
    return {pid: cmd for pid, cmd in children() if not any(name in cmd for name in _LIFELONG)}


def _reap_new(before, what, wanted=lambda cmd: True, *, session=False):
    """Kill the live children not in ``before`` whose command line is ``wanted``; fail naming them.

    Processes of session-wide fixtures (:data:`SESSION_PROCESSES`) count only for the session's check.
    """
    leaked = {pid: cmd for pid, cmd in _live_children().items()
              if pid not in before and wanted(cmd) and (session or pid not in SESSION_PROCESSES)}
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)
    assert not leaked, f"{what} left running (killed now): {leaked}"


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """A test must not leave Python threads running (decoder pools, watchers, client loops, ...)."""
    before = set(threading.enumerate())
    yield
    still = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not still, f"threads left running: {still}"


@pytest.fixture(autouse=True)
def no_leaked_processes():
    """A test must not leave child processes running (scope: the test and its function fixtures)."""
    before = set(_live_children())
    yield
    _reap_new(before, "child processes", lambda cmd: "multiprocessing.spawn" not in cmd)


@pytest.fixture(autouse=True, scope="module")
def no_leaked_workers():
    """A test module must not leave inference workers running once its module-scoped fixtures are gone."""
    before = set(_live_children())
    yield
    _reap_new(before, "inference workers of the module", lambda cmd: "multiprocessing.spawn" in cmd)


@pytest.fixture(autouse=True, scope="session")
def no_leaked_processes_at_all():
    """The session must not leave any child process running once its session-wide fixtures are gone."""
    before = set(_live_children())
    yield
    _reap_new(before, "child processes of the test session", session=True)
