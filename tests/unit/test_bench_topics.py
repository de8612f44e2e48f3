"""The bench deletes only topics that carry its run's prefix as a whole name part."""

from __future__ import annotations

import pytest

from disruptfeed.bench._topics import is_ours

pytestmark = pytest.mark.unit

PREFIX = "bench-1a2b3c4d-feed-pipeline-01"


@pytest.mark.parametrize(
    "topic",
    [
        f"{PREFIX}.account-disrupted",
        f"{PREFIX}-worker-events-changelog",
        f"changelog__{PREFIX}-quix--{PREFIX}.account-disrupted--default",
    ],
)
def test_the_runs_own_topics_are_ours(topic: str) -> None:
    assert is_ours(topic, PREFIX)


@pytest.mark.parametrize(
    "topic",
    [
        f"x{PREFIX}.account-disrupted",  # a longer word
        f"{PREFIX}0.account-disrupted",  # run 010, not 01
        "bench-1a2b3c4d-feed-pipeline-02.account-disrupted",
        "disruptfeed.account-disrupted",
    ],
)
def test_anything_else_is_not(topic: str) -> None:
    assert not is_ours(topic, PREFIX)
