"""Fill a large array chunk of rows by chunk of rows, on one thread per core.

Converting the store's float16 fingerprints to float32 is what a large
library's reads cost: numpy converts one value at a time (2.5-3 ns a value on
the 2-core machines measured here, 0.3-0.4 s for 100,000 fingerprints), and it
releases the GIL while it does. Chunks of rows on one thread per core divide
that time, and each chunk stays in the CPU's cache between its conversion
and what is done with it next.

The work handed in must not call BLAS (a matrix product): OpenBLAS runs its
own threads, and two Python threads calling it at once ran slower than one
(measured: 704 against 457 ms for one photo against 100,000). Do the
products after the conversion, on the whole result.
"""

from concurrent.futures import ThreadPoolExecutor

from ._cores import usable_cores

__all__ = ["CHUNK_ROWS", "fill_by_chunks"]

#: Rows per chunk: 5 MB of float32 at 1280 dimensions, within a core's share of the cache.
CHUNK_ROWS = 1024


def fill_by_chunks(fill, n_rows, *, chunk_rows=CHUNK_ROWS):
    """Call ``fill(start, stop)`` for consecutive chunks of ``n_rows`` rows, on one thread per core.

    Parameters
    ----------
    fill : callable
        ``fill(start, stop)`` writes rows ``[start, stop)`` of the caller's
        output; chunks never overlap, so no lock is needed. Its work should
        release the GIL (numpy casts and ufuncs do) and call no BLAS.
    n_rows : int
        Rows in all.
    chunk_rows : int, default=CHUNK_ROWS
        Rows per call. Fewer rows than two chunks are filled in the calling
        thread, where threads would cost more than they save.
    """
    starts = range(0, n_rows, chunk_rows)
    workers = min(usable_cores(), len(starts))
    if workers < 2:
        for start in starts:
            fill(start, min(start + chunk_rows, n_rows))
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="imagecluster-rows") as pool:
        for _ in pool.map(lambda start: fill(start, min(start + chunk_rows, n_rows)), starts):
            pass  # consuming the results re-raises a chunk's exception here
