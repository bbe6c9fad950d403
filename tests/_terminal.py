"""Run a command with stdout and stderr on a pseudo-terminal, as a user at a terminal would see it."""

import os
import pty
import subprocess
import sys


def on_terminal(*args, env=None, timeout=300):
    """Run ``python -m imagecluster ARGS`` on a new pseudo-terminal; returns ``(exit status, what it showed)``."""
    master, slave = pty.openpty()
    env = dict(os.environ if env is None else env, COLUMNS="200")
    proc = subprocess.Popen([sys.executable, "-m", "imagecluster", *args], stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(timeout), b"".join(chunks).decode(errors="replace")
