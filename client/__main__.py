"""``python -m client``: the same as ``elysium-client``."""

from client.cli import main

main()
