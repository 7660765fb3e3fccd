"""bench.data.prefetch: ordered, bounded, exception-propagating loading ahead, for a data set's
finite id list (evaluation) and an endless key stream (training)."""

from __future__ import annotations

import itertools
import threading

import pytest

from bench.core.errors import DataError
from bench.data.prefetch import prefetch, prefetch_keys
from bench.data.voc import resolve_split
from tests.conftest import truncate_file


def _prefetch_threads(prefix="fcn-prefetch"):
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


# -- a data set's ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_prefetch_keeps_order(voc_root, workers):
    dataset = resolve_split(voc_root, "trainval")
    assert [s.id for s in prefetch(dataset, workers=workers, depth=2)] == dataset.ids
    assert not _prefetch_threads()


def test_prefetch_raises_first_error_in_order_naming_the_file(voc_root):
    dataset = resolve_split(voc_root, "trainval")
    truncate_file(dataset.image_path(dataset.ids[2]), 0.3)
    truncate_file(dataset.label_path(dataset.ids[4]), 0.3)
    seen = []
    with pytest.raises(DataError) as info:
        for sample in prefetch(dataset, workers=3, depth=4):
            seen.append(sample.id)
    assert seen == dataset.ids[:2]
    assert info.value.path == dataset.image_path(dataset.ids[2])
    assert not _prefetch_threads()


def test_prefetch_is_bounded_and_stops_on_early_exit(voc_root):
    dataset = resolve_split(voc_root, "trainval")
    loaded = []
    release = threading.Event()

    def slow_load(image_id):
        loaded.append(image_id)
        release.wait(5)
        return image_id

    iterator = prefetch(dataset, workers=2, depth=2, load=slow_load)
    release.set()
    assert next(iterator) == dataset.ids[0]
    assert len(loaded) <= 3  # depth 2 queued + the one refilled after the first was taken
    iterator.close()
    assert not _prefetch_threads()
    assert len(loaded) <= 3


def test_prefetch_cleans_up_on_keyboard_interrupt(voc_root):
    dataset = resolve_split(voc_root, "trainval")
    with pytest.raises(KeyboardInterrupt):
        for _ in prefetch(dataset, workers=2, depth=3):
            raise KeyboardInterrupt
    assert not _prefetch_threads()


class _Ids:
    """The two things `prefetch` reads of a data set."""

    def __init__(self, ids):
        self.ids = ids

    def load(self, image_id):
        return image_id.upper()


def test_prefetch_copies_the_ids_when_iteration_starts():
    dataset = _Ids(["a", "b", "c"])
    iterator = prefetch(dataset, workers=2, depth=2)
    dataset.ids = ["x"]  # before the first item: the list read is this one
    assert list(iterator) == ["X"]
    dataset = _Ids(["a", "b", "c"])
    iterator = prefetch(dataset, workers=2, depth=2)
    assert next(iterator) == "A"
    dataset.ids.append("d")  # after: the copy taken at the start is walked
    assert list(iterator) == ["B", "C"]


# -- a key stream -------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_prefetch_keys_walks_an_endless_stream_in_order_drawing_depth_ahead(workers):
    drawn = []

    def keys():
        for key in itertools.count():
            drawn.append(key)
            yield key

    stream = prefetch_keys(lambda key: key * 10, keys(), workers=workers, depth=4,
                           thread_name="fcn-test-load")
    assert [next(stream) for _ in range(6)] == [0, 10, 20, 30, 40, 50]
    # inline: one key per result; threaded: at most `depth` keys beyond what was consumed
    assert len(drawn) == 6 if workers == 0 else 6 <= len(drawn) <= 6 + 4
    stream.close()
    assert not _prefetch_threads("fcn-test-load")


def test_prefetch_keys_raises_the_failure_at_its_turn_and_stops_the_threads():
    def load(key):
        if key == 3:
            raise ValueError("key 3 is bad")
        return key

    seen = []
    with pytest.raises(ValueError, match="key 3 is bad"):
        for value in prefetch_keys(load, itertools.count(), workers=2, depth=4,
                                   thread_name="fcn-test-load"):
            seen.append(value)
    assert seen == [0, 1, 2]
    assert not _prefetch_threads("fcn-test-load")


def test_prefetch_keys_never_holds_more_than_depth_loads():
    running, peak, lock = [0], [0], threading.Lock()
    taken = threading.Event()

    def load(key):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        taken.wait(0.01)
        with lock:
            running[0] -= 1
        return key

    assert list(prefetch_keys(load, range(40), workers=8, depth=3)) == list(range(40))
    assert peak[0] <= 3
