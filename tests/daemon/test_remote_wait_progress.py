"""``imagecluster remote wait`` shows the daemon's Progress signal as a bar on a terminal (``--quiet``: none)."""

import asyncio

from imagecluster.plugin_api import AsyncClient

from _terminal import on_terminal


async def _pending(library):
    """Wait until the daemon's first scan queued the photos (its worker then loads TensorFlow for seconds)."""
    async with AsyncClient() as client:
        for _ in range(600):
            status = await client.status()
            if status.pending or status.indexed:
                return status
            await asyncio.sleep(0.05)
    raise AssertionError(f"the daemon queued nothing of {library}")


def test_remote_wait_shows_progress_on_a_terminal(start_daemon, burst_library):
    start_daemon(burst_library)
    status = asyncio.run(_pending(burst_library))
    assert status.indexed < 6, "the daemon finished before the test could watch it"
    code, shown = on_terminal("remote", "wait", "120")
    assert code == 0, shown
    assert "\rthe daemon is fingerprinting " in shown and "/6 photos" in shown, shown
    assert shown.endswith("\r\x1b[Kidle\r\n"), shown  # the bar is wiped before the answer
