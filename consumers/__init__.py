"""Reading the feed: the typed event subscriber for services, and the ops alert stream."""

from __future__ import annotations

__all__ = ["InvalidRecord", "Received", "Start", "Subscription", "read_alerts", "subscribe"]

from consumers._alerts import read_alerts
from consumers._subscription import InvalidRecord, Received, Start, Subscription, subscribe
