"""Stream processing: exact rolling counts per actor region, and alerts (Faust).

Public API::

    from streams import CountStore, AlertEngine, Alert, load_rules
    from streams.app import create_app  # the Faust app (imports Faust)
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
    "load_rules",
]

from streams._alerts import Alert
from streams._engine import AlertEngine
from streams._processor import Processor
from streams._rules import RuleSet, load_rules
from streams._windows import WINDOWS, Counted, CountStore
