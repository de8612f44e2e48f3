"""What ``audit verify`` reports: findings, each with a kind, a position and a count."""

from __future__ import annotations

__all__ = ["Finding", "Kind", "VerifyReport"]

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal[
    "altered", "missing", "added", "duplicated", "reordered", "bad-signature", "unknown-key",
    "retired-key", "unsigned", "unsequenced", "broken-chain", "missing-checkpoint",
    "root-mismatch",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Finding:
    """One failure: what, where (checkpoint and partition range), and how many events."""

    kind: Kind
    where: str
    detail: str
    count: int = 1

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}: {self.detail}"


@dataclass(slots=True)
class VerifyReport:
    """What ``audit verify`` found."""

    checkpoints: int = 0
    events_verified: int = 0
    not_yet_covered: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No finding at all."""
        return not self.findings

    def counts(self) -> dict[str, int]:
        """Events (or checkpoints) per kind of finding."""
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.kind] = out.get(f.kind, 0) + f.count
        return out
