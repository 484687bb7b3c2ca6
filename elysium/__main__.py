"""``python -m elysium`` is the ``elysium`` command."""

from elysium.cli import main

main()
