"""The real daemon keeps its library's fingerprints mapped from the store, out of its resident memory between calls.

Its start-up also says how long each step took (the store read, the
comparison with the folder), so that a slow start of a large library can be
told apart from its log.
"""

import asyncio
import os

import numpy as np
import pytest

from imagecluster import Store

DIM = 1280


def mapped_store_kb(pid, snapshot):
    """Resident kB of process ``pid``'s mappings of ``snapshot``, or None when it has none."""
    found, resident, inside = False, 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):
                inside = len(head) >= 6 and head[5] == str(snapshot)
                found |= inside
            elif inside and head[0] == "Rss:":
                resident += int(head[1])
    return resident if found else None


@pytest.mark.parametrize("gallery", [False, True])
def test_after_a_cluster_the_fingerprints_are_mapped_and_not_resident(gallery, burst_library, start_daemon, client):
    # The store as `imagecluster index` leaves it (compacted), with fingerprints for the files as they are.
    rels = sorted(p.relative_to(burst_library).as_posix() for p in burst_library.rglob("*.jpg"))
    rng = np.random.default_rng(0)
    base = rng.standard_normal(DIM)
    store = Store(burst_library)
    items = []
    for k, rel in enumerate(rels):
        st = os.stat(burst_library / rel)
        items.append((rel, st.st_size, st.st_mtime_ns, base + (0.1 if k < 3 else 5.0) * rng.standard_normal(DIM)))
    store.put("lite0", items)
    store.compact()
    snapshot = (burst_library / ".imagecluster" / "fingerprints.pk").resolve()

    daemon = start_daemon(burst_library, config={"gallery": gallery})

    async def cluster():
        async with client() as ic:
            groups = await ic.call_cluster(0.7)
            if gallery:
                await ic.call_gallery(str(burst_library))  # the gallery made after the Cluster reads them too
            return groups

    groups = asyncio.run(cluster())
    assert [len(g) for g in groups] == [3]  # the three photos made alike, from the store (nothing fingerprinted)
    assert mapped_store_kb(daemon.pid, snapshot) == 0  # mapped, read for the Cluster and the gallery, let go again

    log = daemon.log()
    assert f"store of {burst_library.resolve()} read: {len(rels)} photos in " in log, log
    assert f"library {burst_library.resolve()} compared with its store in " in log, log
