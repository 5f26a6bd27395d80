"""The per-call contexts read inside the blocks (``record_attention``, ``intervene``, and any later one):
how many are open in the whole process, which is what a ``torch.compile``'d model checks.

A per-call context lives in a :class:`contextvars.ContextVar` that compiled code cannot see, so a compiled
:class:`coatnet.CoAtNet` asks :func:`needs_eager` first and runs the call on its eager modules while any
context may be open. The count is process-wide (compiled code guards on the module-level bool
:data:`ANY_OPEN` and recompiles when it flips): a compiled call in a thread without a context may run
eagerly while another thread records. Slower, never wrong.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()
_COUNT = 0
ANY_OPEN = False


@contextmanager
def context_open() -> Iterator[None]:
    """Count one per-call context as open while the ``with`` block runs."""
    _change(+1)
    try:
        yield
    finally:
        _change(-1)


def needs_eager() -> bool:
    """Whether a call may ask for something per call that ``torch.compile`` cannot see: a per-call context
    open anywhere in the process. The check costs nothing in compiled code and breaks no graph."""
    return ANY_OPEN


def _change(by: int) -> None:
    global _COUNT, ANY_OPEN
    with _LOCK:
        _COUNT += by
        ANY_OPEN = _COUNT > 0
