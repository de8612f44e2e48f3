"""The event loop every long-running process of the project uses (worker, dispatcher, bench)."""

from __future__ import annotations

__all__ = ["use_uvloop"]

import asyncio
import warnings


def use_uvloop() -> bool:
    """Make new event loops uvloop ones, where uvloop is installed; returns whether it is.

    Faust's per-record cost is mostly asyncio's own machinery (tasks, futures, queues): a no-op
    Faust agent takes records about 20% faster on uvloop, the worker about 8%.
    """
    try:
        import uvloop
    except ImportError:  # not built for this platform (Windows): asyncio's own loop
        return False

    with warnings.catch_warnings():
        # Event loop policies are deprecated from Python 3.14; mode's Worker still gets its loop
        # through the policy, so this is the way to hand it uvloop.
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True
