"""Where the output of SecretFlow, Ray, brpc and SPU goes: a log file, not the user's console.

* :func:`log_file`: one file per process for SecretFlow's and Ray's console output, and
  :func:`quiet`, which sends Python's ``sys.stdout``/``sys.stderr`` there for a while.  The file
  is removed from its folder as soon as it is open (nothing is left behind, however the process
  ends); :func:`read_log` reads it back and :func:`keep_log` copies it out when a failed run
  keeps it for debugging;
* :class:`NativeLogs`: native threads (brpc, SPU) write to file descriptors 1 and 2, which
  Python's redirection does not reach: while a production session is open they point at the
  same log file, and the user's console stays reachable through copies of the original
  descriptors (:attr:`NativeLogs.console_stderr` is where one-line errors go);
* :class:`SpuLogs`: SPU's own log, one file per party of this process in the session's
  temporary folder (:mod:`.scratch`), the source of the communication figures
  (:mod:`ppml_torch.runners.comm`).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping

from ..comm import CommStats, link_totals

_LOG: io.TextIOBase | None = None


def log_file() -> io.TextIOBase:
    """One file per process for SecretFlow's and Ray's console output, kept open for good.

    Ray keeps references to the ``sys.stdout``/``sys.stderr`` it saw at start-up and writes to
    them later; a file that is never closed is safe, a temporary buffer is not.  Its name is
    removed at once: it lives as long as this process holds it open.
    """
    global _LOG
    if _LOG is None:
        fd, path = tempfile.mkstemp(prefix="ppml-torch-secretflow-", suffix=".log")
        os.unlink(path)  # read and write through fd (opened for both)
        _LOG = open(fd, "w", buffering=1)  # noqa: SIM115 - lives as long as the process
    return _LOG


def read_log(offset: int = 0) -> bytes:
    """What :func:`log_file` holds from byte ``offset`` on (Python's and native lines)."""
    log = log_file()
    log.flush()
    fd = log.fileno()
    return os.pread(fd, max(0, os.fstat(fd).st_size - offset), offset)


def keep_log(folder: str, name: str = "console.log") -> str:
    """A copy of :func:`log_file` as ``folder/name`` (a failed run keeps it); its path."""
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(read_log())
    return path


@contextlib.contextmanager
def quiet() -> Iterator[io.TextIOBase]:
    """Keep SecretFlow's and Ray's start-up chatter off the user's console (it goes to a log)."""
    log = log_file()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield log


class NativeLogs:
    """Native (brpc/SPU) log lines go to SecretFlow's log file, not the user's console.

    brpc writes to file descriptor 2 from its own threads; Python's ``redirect_stderr`` does
    not reach it.  While the session is open, descriptors 1 and 2 point at the log file and
    ``sys.stdout``/``sys.stderr`` write to copies of the original descriptors.
    """

    def __init__(self) -> None:
        log = log_file()
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = (os.dup(1), os.dup(2))
        self._py = (sys.stdout, sys.stderr)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = open(os.dup(self._saved[0]), "w", buffering=1)  # noqa: SIM115
        sys.stderr = open(os.dup(self._saved[1]), "w", buffering=1)  # noqa: SIM115

    @property
    def console_stderr(self) -> int:
        """A descriptor of the user's standard error (for one-line errors from any thread)."""
        return self._saved[1]

    def restore(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        sys.stdout, sys.stderr = self._py


class SpuLogs:
    """SPU's log files of this process's parties, one per party, in the session's folder.

    With SPU's per-op profile on, each party's runtime logs the link's figures of every run
    (:func:`~ppml_torch.runners.comm.link_totals`); :meth:`mark` and :meth:`comm_since` read
    what a run appended.  Without a folder (profile off) there are no figures: ``None``.
    """

    def __init__(self, folder: str | None, files: Mapping[str, str]):
        """``files``: party -> its file name in ``folder`` (``None``: SPU's profile is off, no
        log and no figures)."""
        self.folder = folder
        self._paths = {p: os.path.join(folder, f) for p, f in files.items()} if folder else {}

    def path(self, party: str) -> str | None:
        """Where ``party``'s SPU runtime logs, or ``None`` (SPU's console default)."""
        return self._paths.get(party)

    def mark(self) -> dict[str, int]:
        """How far each party's log has been written (before a run)."""
        return {p: os.path.getsize(f) if os.path.exists(f) else 0 for p, f in self._paths.items()}

    def comm_since(self, marks: Mapping[str, int]) -> CommStats | None:
        """The link's figures of what the parties logged since ``marks``, summed and per party."""
        if self.folder is None:
            return None
        per = {}
        for p, path in self._paths.items():
            text = ""
            if os.path.exists(path):
                with open(path, "rb") as f:
                    f.seek(marks.get(p, 0))
                    text = f.read().decode("utf-8", "replace")
            per[p] = link_totals(text)
        return CommStats(sum(b for b, _ in per.values()), sum(a for _, a in per.values()), per)
