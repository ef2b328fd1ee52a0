"""Watching the other parties of a production session, whatever this party's main thread does.

SecretFlow and SPU may wait in native code for a party that is gone, or end the process
without a word; so a production session is supervised from the moment start-up begins:

* :class:`StartupGuard`: a separate small process (:mod:`.startup_guard`) that ends this one
  with a one-line message if start-up takes longer than ``start_timeout_s + timeout_s`` (a
  thread cannot: brpc's TLS handshake waits in a native call that holds the GIL);
* :class:`Watchdog`: a thread that probes the other parties' ports once a second and ends
  this process (exit code 3, one line naming the party) when a party that was seen listening
  stays unreachable for ``timeout_s``, or when start-up is past its deadline;
* :func:`install_sigint_handler`: SecretFlow's sender thread ends the process with SIGINT
  when a send fails; the handler turns that into an exception in the main thread;
* :func:`exit_at_shutdown`: after a lost party, the process ends when the main program is done
  even if SecretFlow's threads still wait.

:class:`Supervisor` runs all of them for one session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .cluster import Cluster, reachable

LOST_EXIT_CODE = 3  # docs/parties.md: a party lost


def missing_parties(cluster: Cluster, party: str) -> list[str]:
    """The other parties on whose ports nothing listens now."""
    return [
        p.name
        for p in cluster.parties
        if p.name != party and not (reachable(p.address) or reachable(p.spu_address))
    ]


def startup_limit_s(cluster: Cluster) -> float:
    """How long start-up may take as a whole: ``start_timeout_s + timeout_s``."""
    return cluster.start_timeout_s + cluster.timeout_s


def tls_hint(cluster: Cluster) -> str:
    """What to check when start-up hangs with every port open (a TLS handshake that fails)."""
    if not cluster.tls:
        return ""
    return (
        "; with tls, check that every party's certificate is signed by the ca_cert of the "
        "cluster file"
    )


def die(console_stderr: int, msg: str) -> None:
    """The one-line error on the user's console, then end the process (exit code 3) at once,
    from any thread (the main thread may be inside :func:`~.logs.quiet`)."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    os.write(console_stderr, f"ppml-torch: {msg}\n".encode())
    os._exit(LOST_EXIT_CODE)


class StartupGuard:
    """The :mod:`.startup_guard` process: it kills this one, with ``message``, if start-up takes
    longer than ``limit_s``; :meth:`end` (closing its standard input) says start-up is done."""

    def __init__(self, limit_s: float, message: str, console_stderr: int):
        from . import startup_guard

        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            # -I -S: no site, and the script's folder is not on sys.path (stdlib names only)
            [
                sys.executable,
                "-I",
                "-S",
                startup_guard.__file__,
                str(os.getpid()),
                str(limit_s),
                message,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=console_stderr,
        )

    def end(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - it ends by itself at its deadline anyway
                pass


class Watchdog:
    """Ends this process with the one-line error when another party's ports stay closed for
    ``timeout_s``, or when start-up is past ``startup_deadline`` (a ``time.monotonic()``;
    ``None`` once start-up is done), whatever the main thread waits for."""

    def __init__(self, cluster: Cluster, party: str, console_stderr: int, startup_deadline: float):
        self.cluster = cluster
        self.party = party
        self.startup_deadline: float | None = startup_deadline
        self._stderr = console_stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="ppml-party-watch")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        gone: dict[str, float] = {}
        seen: set[str] = set()  # parties that started: before that, start_timeout_s applies
        while not self._stop.wait(1.0):
            now = time.monotonic()
            deadline = self.startup_deadline
            if deadline is not None and now > deadline and not self._stop.is_set():
                self._startup_overdue()
            for p in self.cluster.parties:
                if p.name == self.party:
                    continue
                if reachable(p.address) or reachable(p.spu_address):
                    seen.add(p.name)
                    gone.pop(p.name, None)
                    continue
                if p.name not in seen:
                    continue
                since = gone.setdefault(p.name, now)
                if now - since >= self.cluster.timeout_s and not self._stop.is_set():
                    die(
                        self._stderr,
                        f"party {p.name} stopped answering: nothing listened on its ports "
                        f"({p.address}, {p.spu_address}) for {self.cluster.timeout_s:g} s "
                        "(timeout_s); check that it runs (its own output says why it stopped)",
                    )

    def _startup_overdue(self) -> None:
        c = self.cluster
        limit = startup_limit_s(c)
        missing = missing_parties(c, self.party)
        if missing:
            die(
                self._stderr,
                f"party {', '.join(missing)} did not start within {limit:g} s "
                "(start_timeout_s + timeout_s); start every party with the same cluster file",
            )
        die(
            self._stderr,
            f"start-up did not finish within {limit:g} s (start_timeout_s + timeout_s) though "
            f"every party's ports answer{tls_hint(c)}; every party must run the same program "
            "with the same cluster file",
        )


def install_sigint_handler(translate: Callable[[BaseException], BaseException]) -> None:
    """SecretFlow's sender thread ends the process (SIGINT -> os._exit(1), no message) when a
    send fails; raise ``translate(its exception)`` in the main thread instead.  A SIGINT with
    no such exception is the user's ^C: :class:`KeyboardInterrupt`."""
    from secretflow.distributed.fed.global_context import get_global_context

    def handler(signum: int, frame: Any) -> None:
        ctx = get_global_context(assert_none=False)
        exc = ctx.get_last_exception() if ctx is not None else None
        if exc is None:
            raise KeyboardInterrupt
        raise translate(exc)

    signal.signal(signal.SIGINT, handler)


def exit_at_shutdown() -> None:
    """After a lost party, SecretFlow's worker threads may wait in native code and keep the
    interpreter from ending; end it (code 1, after flushing) when the main program is done."""

    def bye() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    threading._register_atexit(bye)  # type: ignore[attr-defined]  # runs before thread joins


class Supervisor:
    """The start-up guard and the watchdog of one production session (see the module doc)."""

    def __init__(self, cluster: Cluster, party: str, console_stderr: int):
        self.cluster = cluster
        self.party = party
        self.console_stderr = console_stderr
        self._guard: StartupGuard | None = None
        self._watchdog: Watchdog | None = None
        self._exits_at_shutdown = False

    def start(self) -> None:
        """From now on start-up ends by ``start_timeout_s + timeout_s``, and a party seen
        listening and then gone is named within ``timeout_s`` (a TLS handshake between
        certificates of different CAs waits forever in brpc, with every port open)."""
        limit = startup_limit_s(self.cluster)
        self._guard = StartupGuard(
            limit,
            f"party {self.party}: start-up did not finish within {limit:g} s "
            f"(start_timeout_s + timeout_s){tls_hint(self.cluster)}; every party must run the "
            "same program with the same cluster file",
            self.console_stderr,
        )
        deadline = time.monotonic() + limit
        self._watchdog = Watchdog(self.cluster, self.party, self.console_stderr, deadline)
        self._watchdog.start()

    def startup_done(self) -> None:
        if self._watchdog is not None:
            self._watchdog.startup_deadline = None
        self._end_guard()

    def lost(self) -> None:
        """A party was lost (the caller raises the error): the runtime is unusable now."""
        self._end_guard()
        if not self._exits_at_shutdown:
            self._exits_at_shutdown = True
            exit_at_shutdown()
        self.stop()

    def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()

    def _end_guard(self) -> None:
        guard, self._guard = self._guard, None
        if guard is not None:
            guard.end()
