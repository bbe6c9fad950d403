"""The daemon's log: one format for the daemon and its worker; "stopped" only after "serving"."""

import asyncio

from imagecluster.plugin_api import AsyncClient


async def _wait_idle():
    async with AsyncClient(timeout=120) as client:
        assert await client.wait_idle(120)


def test_one_format_and_no_stopped_without_serving(start_daemon, burst_library):
    first = start_daemon(burst_library)
    asyncio.run(_wait_idle())  # the worker started, fingerprinted, and logged
    second = start_daemon(burst_library, wait=False)
    assert second.proc.wait(60) == 3, second.log()
    said = second.log().splitlines()
    assert any("already taken" in line for line in said) and "imagecluster daemon: stopped" not in said, said

    assert first.stop() == 0
    lines = first.log().splitlines()
    assert "imagecluster daemon: inference worker started (model lite0)" in lines, lines
    assert lines[-1] == "imagecluster daemon: stopped", lines
    # Every line the daemon or its worker wrote has the same form (TensorFlow's own native text aside).
    ours = [line for line in lines if "imagecluster" in line]
    assert all(line.startswith("imagecluster daemon: ") for line in ours), ours
