"""Stream processing: exact rolling counts per actor region, and alerts (Faust).

Public API::

    from streams import create_app, CountStore, AlertEngine, Alert, load_rules
"""

from __future__ import annotations

__all__ = [
    "WINDOWS",
    "Alert",
    "AlertEngine",
    "CountStore",
    "Counted",
    "Processor",
    "RuleSet",
    "create_app",
    "load_rules",
]

from streams._alerts import Alert
from streams._processor import Processor
from streams._rules import AlertEngine, RuleSet, load_rules
from streams._windows import WINDOWS, Counted, CountStore


def create_app(*args: object, **kwargs: object) -> object:
    """Build the Faust app (imported lazily: Faust is slow to import)."""
    from streams.app import create_app as _create

    return _create(*args, **kwargs)  # type: ignore[arg-type]
