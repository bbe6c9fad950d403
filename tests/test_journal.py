"""The store's I/O-free core: ``_journal`` (formats), ``_store_state`` (content) and its checks, without a file."""

import io
import pickle

import numpy as np
import pytest

from imagecluster import InvalidParameter
from imagecluster._journal import BadRecord, all_relpaths, encode, is_relpath, iter_records, safe_load
from imagecluster._store_state import StoreState as State
from imagecluster._validation import check_int, check_relpath, check_vector

pytestmark = pytest.mark.mockbus

F16 = np.dtype("<f2")


def put(path, vector, size=10, mtime=1, model="lite0"):
    return ("put", model, path, size, mtime, "float16", np.asarray(vector, "<f2").tobytes())


def test_records_round_trip_with_their_end_offsets():
    records = [("base", None), put("a.jpg", [1, 0]), ("move", "a.jpg", "b.jpg"), ("del", None, "b.jpg")]
    data = encode(records)
    decoded = list(iter_records(data, 100))
    assert [r for _, r in decoded] == records
    assert decoded[-1][0] == 100 + len(data)


def test_a_torn_tail_is_told_apart_from_damage():
    data = encode([("base", None), put("a.jpg", [1, 0])])
    with pytest.raises(BadRecord) as torn:
        list(iter_records(data[:-3], 0))
    assert torn.value.torn and torn.value.offset == len(encode([("base", None)]))
    damaged = bytearray(data)
    damaged[-1] ^= 0xFF
    with pytest.raises(BadRecord, match="checksum") as bad:
        list(iter_records(bytes(damaged), 0))
    assert not bad.value.torn


def test_a_record_of_the_wrong_shape_is_refused():
    with pytest.raises(BadRecord):
        list(iter_records(encode([("put", "lite0", "/abs.jpg", 1, 1, "float16", b"\0\0")]), 0))
    with pytest.raises(BadRecord):
        list(iter_records(encode([("nonsense",)]), 0))


def test_no_global_is_ever_unpickled():
    hostile = pickle.dumps(print)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        safe_load(io.BytesIO(hostile))
    with pytest.raises(BadRecord, match="unreadable"):
        list(iter_records(encode([print]), 0))


@pytest.mark.parametrize("path, ok", [("a/b.jpg", True), ("", False), ("/a.jpg", False), ("a/../b.jpg", False),
                                      ("a//b.jpg", False), ("./a.jpg", False), ("a\0.jpg", False), (b"a", False)])
def test_relative_paths(path, ok):
    assert is_relpath(path) is ok
    assert all_relpaths(["x.jpg", path]) is ok


def test_state_applies_records_and_survives_a_snapshot():
    state = State(F16)
    for record in (put("a.jpg", [3, 4]), put("b.jpg", [1, 0]), ("move", "a.jpg", "c.jpg"),
                   ("fail", "lite0", "bad.jpg", 5, 6, "truncated"), ("del", "lite0", "b.jpg")):
        state.apply(record)
    header, matrices = state.to_snapshot(b"t")
    regions = bytearray()
    for offset, chunks in matrices:
        regions += bytes(offset - len(regions)) + b"".join(chunks)
    assert header["version"] == 2 and "data" not in header["models"]["lite0"]
    again = State.from_snapshot(pickle.loads(pickle.dumps(header)), F16, bytes(regions))
    assert again.token == b"t" and set(again.models["lite0"].rows) == {"c.jpg"}
    assert again.failed["lite0"]["bad.jpg"].reason == "truncated"
    assert again.models["lite0"].take(["c.jpg"]).tolist() == [[3.0, 4.0]]


def test_state_refuses_a_fingerprint_of_another_length():
    state = State(F16)
    state.apply(put("a.jpg", [1, 0]))
    with pytest.raises(ValueError, match="has 3 values"):
        state.apply(put("b.jpg", [1, 0, 0]))


@pytest.mark.parametrize("snapshot", [{}, {"format": "other"}, {"format": "imagecluster-store", "version": 99}])
def test_a_snapshot_that_is_not_ours(snapshot):
    with pytest.raises(ValueError):
        State.from_snapshot(snapshot, F16)


def test_checks():
    assert check_relpath("a/./b.jpg") == "a/b.jpg"
    for bad in ("/a.jpg", "../a.jpg", "", 3):
        with pytest.raises(InvalidParameter):
            check_relpath(bad)
    assert check_int(np.int64(3), "size", minimum=0) == 3
    for bad in (True, 2.5, -1):
        with pytest.raises(InvalidParameter):
            check_int(bad, "size", minimum=0)
    assert check_vector([1, 2], F16, "a.jpg").dtype == F16
    for bad in ([], [[1.0]], [np.inf], [1e6]):  # 1e6 is not finite in float16
        with pytest.raises(InvalidParameter):
            check_vector(bad, F16, "a.jpg")
