"""imagecluster._row_chunks: chunks of rows filled on one thread per core."""

import threading

import pytest

from imagecluster._row_chunks import fill_by_chunks


def test_every_row_is_filled_once_in_chunks_and_on_more_than_one_thread(monkeypatch):
    import imagecluster._row_chunks as row_chunks

    monkeypatch.setattr(row_chunks, "usable_cores", lambda: 2)  # threads even where the machine has one core
    calls, threads = [], set()
    barrier = threading.Barrier(2, timeout=10)

    def fill(start, stop):
        if start < 2000:  # the first two chunks wait for each other: they must run at once
            barrier.wait()
        calls.append((start, stop))
        threads.add(threading.get_ident())

    fill_by_chunks(fill, 2500, chunk_rows=1000)
    assert sorted(calls) == [(0, 1000), (1000, 2000), (2000, 2500)]
    assert len(threads) == 2 and threading.get_ident() not in threads


@pytest.mark.parametrize("n_rows", [0, 1, 1000])
def test_a_single_chunk_is_filled_in_the_calling_thread(n_rows):
    threads = []
    fill_by_chunks(lambda start, stop: threads.append((threading.get_ident(), start, stop)), n_rows, chunk_rows=1000)
    assert threads == ([(threading.get_ident(), 0, n_rows)] if n_rows else [])


def test_a_chunk_that_fails_raises_in_the_caller():
    def fill(start, stop):
        if start == 1000:
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        fill_by_chunks(fill, 3000, chunk_rows=1000)
