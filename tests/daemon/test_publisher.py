"""imagecluster.daemon._publisher: progress merged and sent at most so often, from any thread."""

import asyncio
import logging
import threading

import pytest

from imagecluster.daemon._publisher import ThrottledPublisher

pytestmark = pytest.mark.mockbus


def test_a_task_reports_its_first_and_last_progress_and_nothing_after_close():
    async def main():
        sent = []
        publisher = ThrottledPublisher(dict, lambda changed, current: None, min_interval=3600.0)
        publisher.start()
        report = publisher.progress_callback(lambda done, total: sent.append((done, total)))
        worker = threading.Thread(target=lambda: [report(done, 100) for done in range(101)])
        worker.start()
        worker.join()
        await asyncio.sleep(0.05)
        assert sent == [(0, 100), (100, 100)]  # the ones between come sooner than the interval
        publisher.close()
        report(100, 100)
        await asyncio.sleep(0.05)
        assert sent == [(0, 100), (100, 100)]

    asyncio.run(main())


def test_values_go_out_when_changed_merged_and_a_failing_publish_is_logged(caplog):
    async def main():
        values, published = {"Indexed": 0}, []

        def publish(changed, current):
            published.append((changed, current))
            if current["Indexed"] == 2:
                raise RuntimeError("the bus went away")

        publisher = ThrottledPublisher(lambda: dict(values), publish, min_interval=0.0)
        publisher.start()
        publisher.notify()  # nothing changed since start: nothing goes out
        await asyncio.sleep(0.05)
        assert published == []
        values["Indexed"] = 1
        publisher.notify()
        await asyncio.sleep(0.05)
        values["Indexed"] = 2
        publisher.notify()
        await asyncio.sleep(0.05)
        assert published == [({"Indexed": 1}, {"Indexed": 1}), ({"Indexed": 2}, {"Indexed": 2})]
        publisher.close()

    with caplog.at_level(logging.ERROR, logger="imagecluster.daemon._publisher"):
        asyncio.run(main())
    assert "cannot publish the progress" in caplog.text and "the bus went away" in caplog.text

