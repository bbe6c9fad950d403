"""``daemon._pending``: settling, ready, in flight; the bookkeeping alone (the caller's stat is a dict here)."""

import time

import pytest

from imagecluster.daemon._pending import PendingPhotos

pytestmark = pytest.mark.mockbus

ROOT = "/lib"


def key(name):
    return (ROOT, name)


def long_ago(pending):
    """A ``since`` that makes a photo due at once."""
    return time.monotonic() - pending.settle - 1


def test_a_photo_settles_then_becomes_ready():
    pending = PendingPhotos(60.0)
    pending.consider(key("a.jpg"), (10, 1), None)
    assert len(pending) == 1 and 59 < pending.next_due() <= 60
    assert pending.settle_due(lambda k: (10, 1), lambda k: None) == []  # not yet
    pending.consider(key("b.jpg"), (20, 1), None, since=long_ago(pending))
    assert pending.settle_due(lambda k: (20, 1), lambda k: None) == [key("b.jpg")]
    assert pending.ready == {key("b.jpg"): (20, 1)} and key("a.jpg") in pending.settling


def test_a_file_still_growing_waits_again():
    pending = PendingPhotos(5.0)
    pending.consider(key("a.jpg"), (10, 1), None, since=long_ago(pending))
    assert pending.settle_due(lambda k: (11, 2), lambda k: None) == []  # it changed: the clock restarts
    assert pending.settling[key("a.jpg")].sig == (11, 2) and pending.next_due() > 4


def test_a_photo_gone_before_it_settled_is_forgotten():
    pending = PendingPhotos(0.0)
    pending.consider(key("a.jpg"), (10, 1), None)
    assert pending.settle_due(lambda k: None, lambda k: None) == [] and len(pending) == 0


def test_what_the_store_holds_is_not_queued():
    pending = PendingPhotos(0.0)
    pending.consider(key("a.jpg"), (10, 1), (10, 1))
    assert len(pending) == 0
    pending.consider(key("b.jpg"), (10, 1), None)
    assert pending.settle_due(lambda k: (10, 1), lambda k: (10, 1)) == [] and len(pending) == 0


def test_the_same_version_seen_twice_is_queued_once():
    pending = PendingPhotos(0.0)
    pending.consider(key("a.jpg"), (10, 1), None)
    pending.consider(key("a.jpg"), (10, 1), None)
    assert pending.settle_due(lambda k: (10, 1), lambda k: None) == [key("a.jpg")]
    pending.consider(key("a.jpg"), (10, 1), None)  # ready already
    assert len(pending) == 1


def test_touch_restarts_only_a_settling_photo():
    pending = PendingPhotos(5.0)
    assert pending.touch(key("a.jpg"), (1, 1)) is False
    pending.consider(key("a.jpg"), (1, 1), None, since=long_ago(pending))
    assert pending.touch(key("a.jpg"), (2, 2)) is True and pending.settling[key("a.jpg")].sig == (2, 2)
    assert pending.touch(key("a.jpg"), None) is True and len(pending) == 0


def test_batches_in_arrival_order():
    pending = PendingPhotos(0.0)
    for i in range(5):
        pending.consider(key(f"{i}.jpg"), (i, i), None)
    pending.settle_due(lambda k: (int(k[1][0]), int(k[1][0])), lambda k: None)
    batch = pending.take(2)
    assert [k for k, _ in batch] == [key("0.jpg"), key("1.jpg")] and len(pending) == 5
    pending.done()
    assert len(pending) == 3 and pending.in_flight == []


def test_a_failed_batch_is_tried_once_more_first_in_line():
    pending = PendingPhotos(0.0)
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        pending.consider(key(name), (1, 1), None)
    pending.settle_due(lambda k: (1, 1), lambda k: None)
    pending.take(2)
    again, given_up = pending.requeue_failed()
    assert again == [key("a.jpg"), key("b.jpg")] and given_up == []
    assert list(pending.ready) == [key("a.jpg"), key("b.jpg"), key("c.jpg")]
    pending.take(2)
    again, given_up = pending.requeue_failed()  # the second failure: given up
    assert again == [] and given_up == [key("a.jpg"), key("b.jpg")] and list(pending.ready) == [key("c.jpg")]


def test_drop_forgets_one_library_or_a_part_of_it():
    pending = PendingPhotos(0.0)
    pending.consider(("/lib", "a/1.jpg"), (1, 1), None)
    pending.consider(("/lib", "b/2.jpg"), (1, 1), None)
    pending.consider(("/other", "a/1.jpg"), (1, 1), None)
    pending.drop("/lib", lambda rel: rel.startswith("a/"))
    assert set(pending.settling) == {("/lib", "b/2.jpg"), ("/other", "a/1.jpg")}
    pending.drop("/lib")
    assert set(pending.settling) == {("/other", "a/1.jpg")}


def test_waiting_by_name_finds_a_moved_photo():
    pending = PendingPhotos(0.0)
    pending.consider(key("2024/a.jpg"), (5, 7), None)
    pending.consider(key("2025/a.jpg"), (5, 7), None)
    assert pending.waiting_by_name(ROOT) == {("a.jpg", (5, 7)): ["2024/a.jpg", "2025/a.jpg"]}
    assert pending.waiting_by_name("/other") == {}


def test_discard_only_the_version_fingerprinted():
    pending = PendingPhotos(0.0)
    pending.consider(key("a.jpg"), (1, 1), None)
    pending.discard(key("a.jpg"), (2, 2))
    assert len(pending) == 1
    pending.discard(key("a.jpg"), (1, 1))
    assert len(pending) == 0 and pending.next_due() is not None  # a stale heap entry, skipped when due
    assert pending.settle_due(lambda k: (1, 1), lambda k: None) == []
