"""The one polling helper of the tests and benchmarks: wait for a condition, fail with what was last seen."""

import asyncio
import inspect
import time


def until(predicate, timeout, what="the condition", *, interval=0.05):
    """Call ``predicate()`` until it returns something true, and return that; AssertionError after ``timeout`` s.

    When ``predicate()`` returns an awaitable (a coroutine function, or a
    lambda returning a coroutine), ``until`` returns a coroutine to await,
    which awaits each answer and sleeps with ``asyncio.sleep`` between calls
    (the event loop keeps running).

    Parameters
    ----------
    predicate : callable
        Called without arguments; its last value is in the failure message.
    timeout : float
        Seconds; an upper bound for a wait, never a measurement.
    what : str, default="the condition"
        What is waited for, for the failure message.
    interval : float, default=0.05
        Seconds between calls.

    Returns
    -------
    object
        The first true value of ``predicate()`` (through a coroutine, see above).
    """
    deadline = time.monotonic() + timeout
    value = predicate()
    if inspect.isawaitable(value):
        return _until_async(value, predicate, deadline, timeout, what, interval)
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s (last: {value!r})")
        time.sleep(interval)
        value = predicate()
    return value


async def _until_async(first, predicate, deadline, timeout, what, interval):
    value = await first
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s (last: {value!r})")
        await asyncio.sleep(interval)
        value = await predicate()
    return value
