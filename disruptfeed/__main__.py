"""``python -m disruptfeed``: the same as the ``disruptfeed`` command."""

from disruptfeed.cli import main

main()
