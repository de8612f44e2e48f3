"""Reading the feed: the typed subscriber, the ops alert stream, push delivery and live streams.

Public API::

    from consumers import Subscription, subscribe, read_alerts   # services and on-call tools
    from consumers import SubscriptionAdmin, Dispatcher          # push delivery to subscribers
    from consumers import follow_sse                             # the live streams' client
"""

from __future__ import annotations

__all__ = [
    "DispatchStats",
    "Dispatcher",
    "InvalidRecord",
    "Received",
    "SSEMessage",
    "Start",
    "Subscription",
    "SubscriptionAdmin",
    "SubscriptionRegistry",
    "follow_sse",
    "read_alerts",
    "subscribe",
]

from consumers._alerts import read_alerts
from consumers._dispatcher import Dispatcher, DispatchStats
from consumers._registry import SubscriptionAdmin, SubscriptionRegistry
from consumers._stream_client import SSEMessage, follow_sse
from consumers._subscription import InvalidRecord, Received, Start, Subscription, subscribe
