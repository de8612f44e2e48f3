"""``disruptfeed bench``: the feed's throughput and latency beside Kafka's and the raw clients'.

Public API::

    from disruptfeed.bench import CASES                # every case: name, unit, peers
    from disruptfeed.bench._command import bench       # the click command

The command lives in its own module because it needs the CLI's helpers, and the CLI imports
it: importing it here would make ``python -m disruptfeed.bench._quix`` import in a circle. The
heavy parts (clients, the worker, Quix) are imported only when the command runs.
"""

from __future__ import annotations

__all__ = ["CASES", "CaseSpec"]

from disruptfeed.bench._report import CASES, CaseSpec
