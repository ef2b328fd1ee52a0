"""The start-up guard: a tiny process that ends a party whose start-up takes too long.

    python -I -S startup_guard.py PARENT_PID LIMIT_S MESSAGE

Started by :class:`ppml_torch.runners.secretflow.supervision.StartupGuard` with a pipe as its
standard input.  When the parent closes the pipe (start-up finished) or ends, the guard exits
quietly; after ``LIMIT_S`` seconds it writes ``ppml-torch: MESSAGE`` to its standard error
(the party's console) and kills the parent with SIGKILL.  A thread of the party cannot do it:
brpc's TLS handshake waits inside a native call that holds the GIL.

Run as a file with ``-I -S``, not as ``-m ppml_torch...``: it starts in milliseconds and imports
nothing but the standard library (not ppml_torch, whose import takes seconds).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time


def main(argv: list[str]) -> int:
    parent, limit, message = int(argv[0]), float(argv[1]), argv[2]
    end = time.monotonic() + limit
    while time.monotonic() < end:
        ready, _, _ = select.select([sys.stdin], [], [], max(0.0, end - time.monotonic()))
        if ready:
            return 0  # start-up finished (or the parent ended): nothing to do
    try:
        os.kill(parent, 0)
    except OSError:
        return 0
    sys.stderr.write("ppml-torch: " + message + "\n")
    sys.stderr.flush()
    os.kill(parent, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
