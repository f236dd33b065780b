"""Pausing Python's cyclic garbage collector around bulk work that makes many objects which all stay
alive (loading 10,000 rules; deciding 5,000 grants). Pure.

Why: the collector runs every 700 new container objects and, as survivors pile up, re-scans the whole
heap — the settings, the compiled rules, the decisions kept in memory. A decision of 5,000 grants made
~70 collections, and every second one a full one (+100 ms). Paused, it makes none; the collector's
counts carry on once it resumes, so nothing is skipped, only not repeated. Reference counting frees
garbage as usual meanwhile. Nests and is shared by threads: the collector resumes when the last
pause ends (if it was running when the first began).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_resume = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while the block runs (see the module's docstring)."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()


def settle() -> None:
    """After a big, long-lived build (a rules reload's compiled rules): collect once, then move everything
    alive to the collector's permanent generation (``gc.freeze``), so later collections never scan it again.
    Without this the new rules sit in the young generations, and the next requests pay for scanning them
    (a generation-1 pass of ~100 ms on the first portal view after a reload, then a full one). What the
    previous call froze is unfrozen first, so the rules this reload replaced are collected here."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
