"""The daemon's start-up indexing on a Dask scheduler (config key ``scheduler``): a real LocalCluster.

The indexer's own worker is never needed here: every photo found at start-up
goes to the cluster's worker process (which loads the real lite0 model), and
the daemon's store gets them all while the indexer keeps running.
"""

import asyncio
import logging
import threading

import pytest

from imagecluster import Store
from imagecluster.daemon import Indexer
from imagecluster.daemon._config import ConfigError, load_config

MODEL = "lite0"
TIMEOUT = 240.0  # an upper bound for waits (a worker process loads TensorFlow), never a measurement


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """No thread left running, except Dask's one process-wide offload thread (started on first use)."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and not t.name.startswith("Dask-Offload")]
    for thread in leaked:
        thread.join(timeout=10)  # the cluster's loop threads end as it closes
    assert not [t.name for t in leaked if t.is_alive()]


def test_a_big_startup_backlog_goes_to_the_dask_scheduler(make_library, caplog):
    lib = make_library({f"{i // 3}/{i}.jpg": ("cat.jpg", "dog.jpg")[i % 2] for i in range(6)})
    caplog.set_level(logging.INFO, logger="imagecluster")

    async def run():
        indexer = Indexer([lib], settle_seconds=0.2, rescan_seconds=0.3, batch_size=2, scheduler="local:1",
                          scheduler_min_photos=4)
        await indexer.start()
        try:
            assert indexer.state == "indexing"  # the cluster's work counts: `remote wait` waits for it
            await indexer.wait_idle(TIMEOUT)
            assert len(Store(lib).entries(MODEL)) == 6 and indexer.state == "idle"
        finally:
            await indexer.stop(timeout=30)

    asyncio.run(run())
    assert "6 photos to fingerprint; sending them to the Dask scheduler local:1" in caplog.text
    assert "6 photos fingerprinted on the Dask scheduler, 0 could not be read" in caplog.text


def test_the_config_checks_scheduler_and_path_map(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'libraries = ["{tmp_path}"]\nscheduler = "tcp://nas:8786"\npath_map = ["/a=/mnt/a"]\n')
    loaded = load_config(config)
    assert (loaded.scheduler, loaded.path_map) == ("tcp://nas:8786", (("/a", "/mnt/a"),))
    config.write_text(f'libraries = ["{tmp_path}"]\nscheduler = "local:many"\n')
    with pytest.raises(ConfigError, match="local:N"):
        load_config(config)
    config.write_text(f'libraries = ["{tmp_path}"]\npath_map = ["relative=/x"]\n')
    with pytest.raises(ConfigError, match="absolute"):
        load_config(config)
