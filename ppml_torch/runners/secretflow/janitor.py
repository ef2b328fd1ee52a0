"""The janitor: a tiny process that removes what its parent leaves behind, however it ends.

    python -I -S janitor.py PGID

Started by :mod:`.scratch` with a pipe as its standard input, in a session of its own (so a
launcher that kills a party's process group, or a ^C in the terminal, does not reach it).  Its
parent writes one command per line:

    add PATH       remove PATH (a file or a folder) when the parent ends
    drop PATH      forget PATH (the parent removed it, or keeps it for debugging)
    group PGID     end process group PGID when the parent ends (a launcher's parties)
    ungroup PGID   forget it (the group has ended)

When the pipe closes, the parent has ended: normally, through ``os._exit``, by a signal, or
killed with SIGKILL.  The janitor then ends the process groups it was given (SIGTERM, SIGKILL
after :data:`GRACE_S`), ends the processes of its parent's process group ``PGID`` whose
command line names one of the paths (Ray's agents outlive a killed driver and keep writing
into its temporary folder), removes the paths, and exits.  It imports nothing but the
standard library (it starts in milliseconds; ``-I -S``: no site, and this folder is not on
``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time

GRACE_S = 5.0  # how long a process group gets after SIGTERM before SIGKILL


def alive_in_group(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still runs (zombies do not count)."""
    for pid in _pids():
        stat = _stat(pid)
        if stat is not None and stat[1] == pgid and stat[0] != "Z":
            return True
    return False


def end_groups(pgids: set[int], grace_s: float = GRACE_S) -> None:
    """SIGTERM to every group, then SIGKILL to those still running after ``grace_s``."""
    for g in pgids:
        with contextlib.suppress(OSError):
            os.killpg(g, signal.SIGTERM)
    end = time.monotonic() + grace_s
    while time.monotonic() < end and any(alive_in_group(g) for g in pgids):
        time.sleep(0.1)
    for g in pgids:
        with contextlib.suppress(OSError):
            os.killpg(g, signal.SIGKILL)


def end_users_of(paths: set[str], pgid: int) -> None:
    """SIGKILL to the processes of group ``pgid`` whose command line names one of ``paths``."""
    me = os.getpid()
    for pid in _pids():
        stat = _stat(pid)
        if pid == me or stat is None or stat[1] != pgid:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if any(p in cmd for p in paths):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def remove(path: str, tries: int = 20) -> None:
    """Remove a file or a folder; again while a process that is ending still writes into it."""
    for _ in range(tries):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        if not os.path.lexists(path):
            return
        time.sleep(0.1)


def main(argv: list[str]) -> int:
    parent_group = int(argv[0])
    paths: set[str] = set()
    groups: set[int] = set()
    for line in sys.stdin:
        cmd, _, arg = line.rstrip("\n").partition(" ")
        if cmd == "add":
            paths.add(arg)
        elif cmd == "drop":
            paths.discard(arg)
        elif cmd == "group":
            groups.add(int(arg))
        elif cmd == "ungroup":
            groups.discard(int(arg))
    # the parent has ended
    if groups:
        end_groups(groups)
    if paths:
        end_users_of(paths, parent_group)
        for p in paths:
            remove(p)
    return 0


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of ``pid``, or ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return fields[0], int(fields[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
