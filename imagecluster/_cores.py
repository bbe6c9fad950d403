"""How many cores this process may use: the one answer every thread pool sizes itself by."""

import os

__all__ = ["usable_cores"]


def usable_cores():
    """The cores this process may run on (its affinity), not every core of the machine.

    Under ``taskset``, a container's ``--cpuset-cpus`` or systemd's
    ``CPUAffinity=``, ``os.cpu_count()`` still counts the whole machine, and
    a pool sized by it runs more threads than cores.
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
