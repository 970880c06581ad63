"""``python -m tasks``; a Ctrl-C at any moment, even while it still imports, stops it quietly."""

from __future__ import annotations

import os
import sys

#: Commands that run until stopped: SIGINT asks them to stop, like SIGTERM (exit 0).
SERVICES = ("worker", "devmail")

try:
    from tasks.cli import main

    code = main()
except KeyboardInterrupt:
    # The terminal sends SIGINT to the whole process group, maybe before the worker
    # has installed its own handler (while it imports, or opens its pool).
    code = 0 if sys.argv[1:2] and sys.argv[1] in SERVICES else 130
    if code:
        print("interrupted", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # Not SystemExit: CPython remembers a KeyboardInterrupt that passed through code run
    # by PyRun_String (as some modules do while they load) and then ends the process
    # by SIGINT anyway, although it was handled here.
    os._exit(code)
raise SystemExit(code)
