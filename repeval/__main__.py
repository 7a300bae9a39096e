"""``python -m repeval`` is the ``repeval`` command."""

from repeval.cli import main

main()
