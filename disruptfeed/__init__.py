"""Disruption Feed: a real-time, typed Kafka feed of platform-abuse disruptions.

The packages, in the order data flows through them:

- :mod:`schemas`: the event models and their CloudEvents codec;
- :mod:`producers`: the typed producer and JSON Lines publishing;
- :mod:`streams`: the Faust worker (rolling counts per region, alerts);
- :mod:`consumers`: the typed subscriber client.

This package holds what they share: settings, errors, topics, the embedded broker and the CLI.
"""

from __future__ import annotations

__all__ = ["Settings", "__version__", "get_settings"]

from disruptfeed.settings import Settings, get_settings

__version__ = "0.1.0"
