"""Child processes of the tests and benchmarks: the daemon runner, stopping, and finding what is left.

:class:`DaemonProcess` runs ``python -m imagecluster daemon`` (or any argv)
with its output in a log file. A daemon that does not stop on SIGTERM is an
error (:class:`DaemonDidNotStop`), never swallowed: it is killed, then
reported.
"""

import contextlib
import os
import signal
import subprocess

#: Generous: the first fingerprint of a run loads TensorFlow in the worker (~5 s
#: alone, more on a loaded 2-core machine).
STARTUP_TIMEOUT = 60.0
WORK_TIMEOUT = 120.0


class DaemonDidNotStop(AssertionError):
    """A daemon ignored SIGTERM for its whole timeout (it was killed)."""


def stop_process(proc, timeout, *, sig=signal.SIGTERM, group=False):
    """Send ``sig``, wait ``timeout`` s, then SIGKILL; returns whether it exited in time.

    With ``group``, whatever is left in the process group (its session is its
    own, so pgid == pid) is killed too.
    """
    in_time = True
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            in_time = False
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return in_time


class DaemonProcess:
    """A daemon (``argv``) in a subprocess, its stdout and stderr in ``log_path``.

    Parameters
    ----------
    argv : list of str
        The command.
    log_path : Path
        Its log.
    env : dict, default=None
        Its environment; None means this process's.
    new_session : bool, default=False
        Start it in a session of its own (see :class:`~.bus.PrivateBus`).
    """

    def __init__(self, argv, log_path, env=None, *, new_session=False, cwd=None):
        self.log_path = log_path
        self._group = new_session
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                         start_new_session=new_session)
        self.pid = self.proc.pid

    def log(self):
        """The log so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Send ``sig`` and wait; returns the exit status. DaemonDidNotStop (after a kill) past ``timeout``."""
        if not stop_process(self.proc, timeout, sig=sig, group=self._group):
            raise DaemonDidNotStop(f"the daemon did not exit within {timeout} s of {sig.name}:\n{self.log()}")
        return self.proc.returncode


def toml(value):
    """``value`` as a TOML value (str, bool, number, list, inline table)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def config_text(settings):
    """A config file's text: one ``key = value`` line per setting."""
    return "".join(f"{key} = {toml(value)}\n" for key, value in settings.items())


#: Pids of the processes of session-wide fixtures (the shared daemons and their buses): a test
#: that happens to start one first (``request.getfixturevalue``) has not leaked it.
SESSION_PROCESSES = set()


def children(pid=None):
    """``[(pid, command line)]`` of the live processes whose parent is ``pid`` (default: this one); no zombies."""
    pid = os.getpid() if pid is None else pid
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            if int(fields[1]) != pid or fields[0] == b"Z":
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError):
            continue
        found.append((int(entry), cmd))
    return found


def proc_state(pid):
    """The one-letter state of a process (``Z`` for a zombie), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()[0].decode()
