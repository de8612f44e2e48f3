"""Answers for every region from any worker: the local part plus every other worker's part.

Each worker counts only the partitions assigned to it. A query the caller does not scope to
``?scope=local`` is asked of every other member of the group too (their URLs are the Faust
assignor's, from each worker's canonical URL: ``DISRUPTFEED_WORKER_URL``), with the caller's own
``Authorization`` header, and the parts are merged. If a member does not answer, the answer is
an error that names it, never a silent part of the counts.
"""

from __future__ import annotations

__all__ = ["Gathered", "gather"]

import asyncio
from dataclasses import dataclass, field
from typing import Any

TIMEOUT_S = 5.0


@dataclass(slots=True)
class Gathered:
    """The parts of one answer: this worker's first, then each peer's that answered."""

    parts: list[Any] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    """Peer URL -> why it gave no part."""


def peers(app: Any) -> list[str]:
    """The canonical URLs of the group's other workers, as the last assignment had them."""
    own = str(app.conf.canonical_url).rstrip("/")
    hosts = {str(host).rstrip("/") for host in app.router.tables_metadata()}
    return sorted(hosts - {own})


async def gather(app: Any, path: str, query: dict[str, str], authorization: str | None,
                 local: Any) -> Gathered:  # fmt: skip
    """``local`` plus the JSON each peer returns for ``path?scope=local&<query>``."""
    import aiohttp

    out = Gathered([local], [str(app.conf.canonical_url).rstrip("/")])
    others = peers(app)
    if not others:
        return out
    headers = {"Authorization": authorization} if authorization else {}
    params = {**query, "scope": "local"}
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:

        async def one(url: str) -> Any:
            async with session.get(f"{url}{path}", params=params) as response:
                if response.status != 200:
                    raise RuntimeError(f"answered {response.status}")
                return await response.json()

        results = await asyncio.gather(*(one(u) for u in others), return_exceptions=True)
    for url, result in zip(others, results, strict=True):
        if isinstance(result, BaseException):
            out.missing[url] = str(result) or type(result).__name__
        else:
            out.parts.append(result)
            out.workers.append(url)
    return out
