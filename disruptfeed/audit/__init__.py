"""Audits of the feed's history: replay, integrity (signatures, Merkle checkpoints), exports."""

from __future__ import annotations

__all__: list[str] = []
