"""Reading events: the typed subscriber client for downstream services."""

from __future__ import annotations

__all__ = ["InvalidRecord", "Received", "Start", "Subscription", "subscribe"]

from consumers._subscription import InvalidRecord, Received, Start, Subscription, subscribe
