"""``python -m modelwarden.cli``: the same as the ``modelwarden`` command."""

from modelwarden.cli import main

main()
