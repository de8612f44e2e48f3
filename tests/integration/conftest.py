"""Fixtures for the integration tests (the broker fixtures are in tests/conftest.py)."""

from __future__ import annotations

from tests.integration.alertmanager import alertmanager_bin

__all__ = ["alertmanager_bin"]
