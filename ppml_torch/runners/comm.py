"""Communication figures from SPU's profiling log.

spu 0.9.3's Python link context has no statistics call.  With ``enable_pphlo_profile`` set in
the RuntimeConfig, each party's runtime logs, at the end of every run,

    Link details: total send bytes N, recv bytes N, send actions N, recv actions N

(the figures of that one run).  SPU's logger is process-wide, so this module points it at one
file per process once, and each run reads the lines appended since the previous read.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import threading

_LINK_RE = re.compile(
    r"Link details: total send bytes (\d+), recv bytes (\d+), send actions (\d+), recv actions (\d+)"
)


@dataclasses.dataclass(frozen=True)
class CommStats:
    """Bytes and send actions of one run, summed over parties, and per party where known.

    ``per_party`` maps party name -> (send bytes, send actions); it is ``None`` when the
    backend cannot attribute figures to parties (the in-process simulator logs every party
    to one unlabelled stream).
    """

    send_bytes: int
    send_actions: int
    per_party: dict[str, tuple[int, int]] | None = None

    def __add__(self, other: CommStats) -> CommStats:
        per = None
        if self.per_party is not None and other.per_party is not None:
            per = {
                p: (
                    self.per_party.get(p, (0, 0))[0] + other.per_party.get(p, (0, 0))[0],
                    self.per_party.get(p, (0, 0))[1] + other.per_party.get(p, (0, 0))[1],
                )
                for p in {*self.per_party, *other.per_party}
            }
        return CommStats(
            self.send_bytes + other.send_bytes, self.send_actions + other.send_actions, per
        )

    def describe(self) -> str:
        s = f"{_mb(self.send_bytes)} sent in {self.send_actions} sends"
        if self.per_party:
            s += (
                " ("
                + ", ".join(f"{p}: {_mb(b)}/{a}" for p, (b, a) in sorted(self.per_party.items()))
                + ")"
            )
        return s


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def link_totals(text: str) -> tuple[int, int]:
    """(send bytes, send actions) summed over every ``Link details`` line in ``text``.

    The one place SPU's link log is read: each party's runtime writes one such line per run,
    so a log holding several parties or several runs gives their sum.
    """
    found = party_links(text)
    return sum(b for b, _ in found), sum(a for _, a in found)


_EXECUTION_RE = re.compile(
    r"\[Profiling\] SPU execution \S+ completed, .*?execution took ([\d.e+-]+)s"
)


def party_links(text: str) -> list[tuple[int, int]]:
    """``(send bytes, send actions)`` of every ``Link details`` line in ``text``, in log order.

    One line per party per run: in-process, where every party logs to one stream without its
    name, the list of one run holds each party's figures, in an unknown party order.
    """
    return [(int(m[1]), int(m[3])) for m in _LINK_RE.finditer(text)]


def execution_seconds(text: str) -> list[float]:
    """SPU's own execution time of every ``[Profiling] SPU execution ... completed`` line in
    ``text`` (one per party per run: the time inside SPU's runtime, waiting for peers
    included, without the caller's thread start-up)."""
    return [float(m[1]) for m in _EXECUTION_RE.finditer(text)]


class SpuLogTap:
    """Routes this process's SPU log to a private file and reads new lines after each run.

    The file's name is removed as soon as SPU has opened it: it lives as long as this process
    (nothing is left in the temporary folder, however the process ends) and is read through
    a descriptor of its own.  SPU starts a new file only past ``max_log_file_size`` (500 MB).
    """

    _lock = threading.Lock()
    _instance: SpuLogTap | None = None

    def __init__(self) -> None:
        from spu import libspu

        fd, path = tempfile.mkstemp(prefix=f"ppml-torch-spu-{os.getpid()}-", suffix=".log")
        opts = libspu.logging.LogOptions()
        opts.enable_console_logger = False
        opts.system_log_path = path
        opts.log_level = libspu.logging.LogLevel.INFO
        try:
            libspu.logging.setup_logging(opts)  # SPU opens the file now
        finally:
            os.unlink(path)
        self._fd = fd

    @classmethod
    def get(cls) -> SpuLogTap:
        with cls._lock:
            if cls._instance is None:
                cls._instance = SpuLogTap()
            return cls._instance

    def mark(self) -> int:
        """Current end of the log: pass it to :meth:`read_since` after a run."""
        return os.fstat(self._fd).st_size

    def read_since(self, offset: int) -> str:
        data = os.pread(self._fd, max(0, self.mark() - offset), offset)
        return data.decode("utf-8", "replace")
