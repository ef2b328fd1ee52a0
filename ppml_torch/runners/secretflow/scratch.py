"""This process's temporary folders, removed on every exit path.

A SecretFlow session writes a few files while it runs: the cluster file of ``ppml-torch
launch``, SPU's per-party logs, Ray's session folder in simulation.  Each lives in a folder of
its own made by :func:`make_dir` (``<tmp>/ppml-torch-<kind>-XXXXXXXX``); the code that made it
removes it when it is done (:func:`remove`).  For every other way a process can end (an
exception, ``os._exit`` after a lost party, SIGTERM, SIGKILL from a launcher or a start-up
guard), the folder is also registered with this process's :mod:`.janitor`: a small process,
started with the first folder, that removes whatever is still registered when this one has
ended, and ends what was registered with :func:`end_with_me` (a launcher's parties).

:func:`keep` takes a folder off the janitor's list: a failed run keeps its logs for debugging
and names the folder in its one-line error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading

PREFIX = "ppml-torch-"  # every temporary name of ppml-torch starts with it

_lock = threading.Lock()
_janitor: tuple[int, subprocess.Popen[bytes]] | None = None  # (pid it was started for, it)
_live: set[str] = set()  # this process's folders, not removed or kept yet


def make_dir(kind: str) -> str:
    """A new folder ``<tmp>/ppml-torch-<kind>-XXXXXXXX``, removed when this process ends
    whatever the way, unless :func:`remove` or :func:`keep` came first."""
    _janitor_process()  # before the folder exists: no moment where nobody would remove it
    path = tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-")
    _tell(f"add {path}")
    _live.add(path)
    return path


def remove(path: str | None) -> None:
    """Remove a folder of :func:`make_dir` now (nothing if ``None`` or already gone)."""
    if path is None:
        return
    shutil.rmtree(path, ignore_errors=True)
    _tell(f"drop {path}")
    _live.discard(path)


def keep(path: str) -> str:
    """Leave a folder of :func:`make_dir` behind on purpose (its name goes in an error)."""
    _tell(f"drop {path}")
    _live.discard(path)
    return path


def live() -> frozenset[str]:
    """This process's folders still in use (made, neither removed nor kept yet)."""
    return frozenset(_live)


def end_with_me(pgid: int) -> None:
    """If this process ends before :func:`forget_group`, process group ``pgid`` is ended too
    (SIGTERM, then SIGKILL: :func:`.janitor.end_groups`)."""
    _tell(f"group {pgid}")


def forget_group(pgid: int) -> None:
    _tell(f"ungroup {pgid}")


def _janitor_process() -> subprocess.Popen[bytes]:
    """This process's janitor, started on first use (again in a forked child)."""
    global _janitor
    from . import janitor

    with _lock:
        if _janitor is None or _janitor[0] != os.getpid():
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", janitor.__file__, str(os.getpgrp())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # out of reach of a kill of this process's group
            )
            _janitor = os.getpid(), proc
        return _janitor[1]


def _tell(line: str) -> None:
    proc = _janitor_process()
    with _lock, contextlib.suppress(OSError):  # a janitor that is gone: nothing more to do
        assert proc.stdin is not None
        proc.stdin.write(line.encode() + b"\n")
        proc.stdin.flush()
