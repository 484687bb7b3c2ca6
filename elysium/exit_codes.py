"""Exit codes both commands (``elysium`` and ``elysium-client``) give, so a script tests one set.

2 is click's own for bad usage (and the server-side command's for a bad setting).
"""

from __future__ import annotations

EXIT_FAILED = 1  # the server refused, a file did not parse, anything else expected
EXIT_UNREACHABLE = 3  # the server (or the database) did not answer
EXIT_TLS = 4  # the server's certificate is not trusted, or ours was refused
EXIT_TOKEN = 5  # the token (API or enrollment) is refused
EXIT_JOB = 6  # a job failed or did not end in time
EXIT_STATE = 7  # local state is missing: not enrolled, not logged in
