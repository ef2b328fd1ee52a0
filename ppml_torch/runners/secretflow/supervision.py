"""Watching the other parties of a production session, whatever this party's main thread does.

SecretFlow and SPU may wait in native code for a party that is gone, or end the process
without a word; so a production session is supervised from the moment start-up begins:

* :class:`StartupGuard`: a separate small process (:mod:`.startup_guard`) that ends this one
  with a one-line message if start-up takes longer than ``start_timeout_s + timeout_s`` plus
  :data:`GUARD_MARGIN_S`: the last resort, should the watchdog's thread not get to run;
* :class:`Watchdog`: a thread that, once a second, probes the other parties' ports and ends this
  process with one line naming the party (exit code 3) when a party that was seen listening
  is gone (:data:`STARTUP_GONE_S` during start-up, ``timeout_s`` afterwards), when the launcher
  says a party ended (:mod:`.launcher`), or when start-up is past its deadline; during
  start-up with TLS it also reads brpc's log for a failed handshake (:mod:`.tls`, exit code 2);
* :func:`install_sigint_handler`: SecretFlow's sender thread ends the process with SIGINT
  when a send fails; the handler turns that into an exception in the main thread;
* :func:`exit_at_shutdown`: after a lost party, the process ends when the main program is done
  even if SecretFlow's threads still wait (exit code 3).

:class:`Supervisor` runs all of them for one session.  Whatever ends the process, its
temporary files go (:mod:`.scratch`); where the cause may be in this party's own log (a TLS
handshake, a start-up that never finished), the line names the folder of logs it kept.
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

from . import launcher, tls
from .cluster import Cluster, reachable
from .logs import read_log

LOST_EXIT_CODE = 3  # docs/parties.md: a party lost
BAD_INPUT_EXIT_CODE = 2  # docs/parties.md: bad input, or parties that disagree
STARTUP_GONE_S = 3.0  # during start-up, a party whose ports answered and then closed has died
GUARD_MARGIN_S = 10.0  # the guard fires this long after the watchdog's deadline
ENDING_S = 10.0  # how long the parties get to end together after they found they disagree


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


def die(console_stderr: int, msg: str, code: int = LOST_EXIT_CODE) -> None:
    """The one-line error on the user's console, then end the process at once, from any thread
    (the main thread may be inside :func:`~.logs.quiet`); the janitor removes its files."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    os.write(console_stderr, f"ppml-torch: {msg}\n".encode())
    os._exit(code)


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
    """Ends this process with a one-line error naming the party and the cause, whatever the
    main thread waits for (see the module doc).  ``startup_deadline``: a ``time.monotonic()``,
    ``None`` once start-up is done; ``keep_logs()`` keeps this party's logs and returns their
    folder.  Under ``ppml-torch launch`` it gets the launcher's news (:func:`.launcher.
    subscribe`) from :meth:`start` to :meth:`stop`."""

    def __init__(
        self,
        cluster: Cluster,
        party: str,
        console_stderr: int,
        startup_deadline: float,
        keep_logs: Callable[[], str] | None = None,
    ):
        self.cluster = cluster
        self.party = party
        self.startup_deadline: float | None = startup_deadline
        self._stderr = console_stderr
        self._keep_logs = keep_logs
        self._news: list[tuple[str, int]] = []
        self._deaf = False
        self._wake = threading.Event()
        self._ending: tuple[float, str, int] | None = None
        self._log_at = len(read_log()) if cluster.tls else 0  # earlier sessions' lines
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="ppml-party-watch")

    def start(self) -> None:
        launcher.subscribe(self._hear)
        self._thread.start()

    def stop(self) -> None:
        if not self._stop.is_set():
            self.deaf()
        self._stop.set()
        self._wake.set()

    def _hear(self, party: str, code: int) -> None:
        if not self._deaf:
            self._news.append((party, code))
            self._wake.set()

    def deaf(self) -> None:
        """No more news from the launcher: every party has received everything (the closing
        barrier), so another party ending cannot change this one's results."""
        self._deaf = True
        launcher.subscribe(None)
        self._news.clear()

    def ending(self, message: str, code: int, within_s: float) -> None:
        """This party ends (e.g. the parties disagree) and says ``message``: from now on only
        that, should ending take longer than ``within_s`` (the others' news is no news)."""
        self._ending = (time.monotonic() + within_s, message, code)

    def _die(self, msg: str, code: int = LOST_EXIT_CODE, keep: bool = False) -> None:
        if self._stop.is_set():
            return  # the session ended meanwhile: nothing to report
        if keep and self._keep_logs is not None:
            msg += f" (this party's logs kept in {self._keep_logs()})"
        die(self._stderr, msg, code)

    def _watch(self) -> None:
        gone: dict[str, float] = {}
        seen: set[str] = set()  # parties that started: before that, start_timeout_s applies
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stop.is_set():
                return
            if self._ending is not None:
                end, message, code = self._ending
                if time.monotonic() > end:
                    self._die(message, code)
                continue
            starting = self.startup_deadline is not None
            self._launcher_news(starting)
            if starting and self.cluster.tls:
                self._handshakes()
            now = time.monotonic()
            deadline = self.startup_deadline
            if deadline is not None and now > deadline:
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
                if starting and now - since >= STARTUP_GONE_S:
                    self._die(
                        f"party {p.name} stopped during start-up: its ports ({p.address}, "
                        f"{p.spu_address}) answered, then closed; check that it runs (its own "
                        "output says why it stopped)"
                    )
                if now - since >= self.cluster.timeout_s:
                    self._die(
                        f"party {p.name} stopped answering: nothing listened on its ports "
                        f"({p.address}, {p.spu_address}) for {self.cluster.timeout_s:g} s "
                        "(timeout_s); check that it runs (its own output says why it stopped)"
                    )

    def _launcher_news(self, starting: bool) -> None:
        """A party that ended with a failure, says the launcher (``ppml-torch launch``)."""
        while self._news and not self._deaf:
            other, code = self._news.pop(0)
            if other == self.party:
                continue
            when = "during start-up" if starting else "while this party still needed it"
            self._die(
                f"party {other} ended ({launcher.ended(code)}) {when}; its own output says why "
                "it stopped"
            )

    def _handshakes(self) -> None:
        """A TLS handshake that brpc's log says failed over a certificate (exit code 2)."""
        text = read_log(self._log_at).decode("utf-8", "replace")
        words = tls.handshake_failure(text)
        if words is None:
            return
        files = self.cluster.tls[self.party] if self.cluster.tls else None
        others = [p for p in self.cluster.names if p != self.party]
        ca, cert = (files.ca_cert, files.cert) if files else ("?", "?")
        self._die(tls.explain(words, self.party, others, ca, cert), BAD_INPUT_EXIT_CODE, True)

    def _startup_overdue(self) -> None:
        c = self.cluster
        limit = startup_limit_s(c)
        missing = missing_parties(c, self.party)
        if missing:
            self._die(
                f"party {', '.join(missing)} did not start within {limit:g} s "
                "(start_timeout_s + timeout_s); start every party with the same cluster file"
            )
        self._die(
            f"start-up did not finish within {limit:g} s (start_timeout_s + timeout_s) though "
            f"every party's ports answer{tls_hint(c)}; every party must run the same program "
            "with the same cluster file",
            keep=True,
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


def exit_at_shutdown(code: int) -> None:
    """After a lost party, SecretFlow's worker threads may wait in native code and keep the
    interpreter from ending; end it with ``code`` (after flushing) when the main program is
    done."""

    def bye() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    threading._register_atexit(bye)  # type: ignore[attr-defined]  # runs before thread joins


class Supervisor:
    """The start-up guard and the watchdog of one production session (see the module doc);
    ``keep_logs()`` keeps this party's logs for debugging and returns their folder."""

    def __init__(
        self,
        cluster: Cluster,
        party: str,
        console_stderr: int,
        keep_logs: Callable[[], str] | None = None,
    ):
        self.cluster = cluster
        self.party = party
        self.console_stderr = console_stderr
        self._keep_logs = keep_logs
        self._guard: StartupGuard | None = None
        self._watchdog: Watchdog | None = None
        self._exits_at_shutdown = False

    def start(self) -> None:
        """From now on start-up ends by ``start_timeout_s + timeout_s``, and a party seen
        listening and then gone is named (see :class:`Watchdog`)."""
        limit = startup_limit_s(self.cluster)
        self._guard = StartupGuard(
            limit + GUARD_MARGIN_S,
            f"party {self.party}: start-up did not finish within {limit:g} s "
            f"(start_timeout_s + timeout_s){tls_hint(self.cluster)}; every party must run the "
            "same program with the same cluster file",
            self.console_stderr,
        )
        deadline = time.monotonic() + limit
        self._watchdog = Watchdog(
            self.cluster,
            self.party,
            self.console_stderr,
            deadline,
            self._keep_logs,
        )
        self._watchdog.start()

    def startup_done(self) -> None:
        if self._watchdog is not None:
            self._watchdog.startup_deadline = None
        self._end_guard()

    def lost(self, code: int = LOST_EXIT_CODE) -> None:
        """The runtime is unusable now (the caller raises the error): the process ends with
        ``code`` once its main program is done."""
        self.stop()
        self._exit_at_shutdown(code)

    def closing(self) -> None:
        """Past the closing barrier: the launcher's news no longer concerns this party (a party
        lost during the closing handshake is still named, by its ports)."""
        if self._watchdog is not None:
            self._watchdog.deaf()

    def ending(self, message: str, code: int = BAD_INPUT_EXIT_CODE) -> None:
        """Start-up stops with ``message`` (the caller closes the runtime, then raises it): the
        process ends with ``code`` once its main program is done, or with ``message`` if
        closing takes longer than :data:`ENDING_S`."""
        self._end_guard()
        if self._watchdog is not None:
            self._watchdog.ending(message, code, ENDING_S)
        self._exit_at_shutdown(code)

    def _exit_at_shutdown(self, code: int) -> None:
        if not self._exits_at_shutdown:  # the first cause decides
            self._exits_at_shutdown = True
            exit_at_shutdown(code)

    def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
        self._end_guard()

    def _end_guard(self) -> None:
        guard, self._guard = self._guard, None
        if guard is not None:
            guard.end()
