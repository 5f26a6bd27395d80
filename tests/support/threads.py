"""Running analyses from several threads at once, for the thread-safety tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def in_threads(*calls: Callable[[], Any], repeat: int = 1) -> list[Any]:
    """Start one thread per call, all at once, each running its call ``repeat`` times; return each
    call's last result, in order. An error in any thread is raised here."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            for _ in range(repeat):
                results[i] = calls[i]()
        except BaseException as error:  # re-raised in the calling thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
