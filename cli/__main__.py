"""``python -m cli`` is the ``elysium`` command."""

from cli.main import main

main()
