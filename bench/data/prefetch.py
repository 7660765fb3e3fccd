"""One thread-pool prefetcher: decode the next samples while the network runs on this one.

Evaluation walks a data set's finite id list (`prefetch`); training walks an endless, sampled
key stream (`prefetch_keys`). Both need the same guarantees: results in key order, bounded
memory (at most `depth` loads queued or running), the first failure raised at its turn, and no
thread outliving the loop when the consumer stops early (break, exception, KeyboardInterrupt).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, TypeVar

K = TypeVar("K")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class IdLoader(Protocol[T_co]):
    """What `prefetch` reads of a data set: its ids and how to load one."""

    @property
    def ids(self) -> Sequence[str]: ...

    def load(self, image_id: str) -> T_co: ...


def prefetch_keys(load: Callable[[K], T], keys: Iterable[K], *, workers: int = 2, depth: int = 8,
                  thread_name: str = "fcn-prefetch") -> Iterator[T]:
    """Yield `load(key)` for each key of `keys` (finite or endless) in order, loading ahead.

    At most `depth` loads are queued or in flight; the next key is drawn from `keys` only when a
    result is taken, so an endless stream is consumed `depth` keys ahead, never more. An
    exception of `load` is raised when its key's turn comes. Closing the iterator early, or an
    exception in the consumer, cancels the queued loads and waits for the running ones.
    workers=0 loads inline, in the consumer's thread.
    """
    key_iter = iter(keys)
    if workers <= 0:
        yield from (load(key) for key in key_iter)
        return
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name)
    pending: deque[Future[T]] = deque()
    try:
        for key in key_iter:
            pending.append(executor.submit(load, key))
            if len(pending) >= max(1, depth):
                break
        while pending:
            item = pending.popleft().result()
            for key in key_iter:  # at most one: refill the slot just taken
                pending.append(executor.submit(load, key))
                break
            yield item
    finally:
        for future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)


def prefetch(dataset: IdLoader[T], workers: int = 2, depth: int = 8,
             load: Callable[[str], T] | None = None) -> Iterator[T]:
    """Yield `load(id)` (default `dataset.load`) for `dataset.ids` in order, decoding ahead.

    The id list is copied when iteration starts; see `prefetch_keys` for the guarantees
    (decoding errors are DataErrors naming the file).
    """
    yield from prefetch_keys(load if load is not None else dataset.load, list(dataset.ids),
                             workers=workers, depth=depth)
