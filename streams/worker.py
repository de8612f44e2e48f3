"""The module-level app for Faust's own command line: ``faust -A streams.worker worker``."""

from __future__ import annotations

__all__ = ["app"]

import faust

from streams.app import create_app

app: faust.App = create_app()
