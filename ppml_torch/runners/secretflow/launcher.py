"""One process per party on this machine: what ``ppml-torch launch`` does.

:func:`launch` writes a loopback cluster file with free ports, starts
``python -m ppml_torch <sub-command ...> --cluster FILE --party NAME`` once per party, each in
its own process group, prints every line of each party prefixed with the party's name, and
returns when all have ended.  When one party fails, the launcher tells the others at once
(a pipe per party, :data:`LAUNCH_FD_ENV`: each ends with one line naming the party and how it
ended, exit code 3, within a second or so, even during start-up, when nothing else could
tell them); a party that has not ended ``timeout_s`` plus a grace period later is killed with
its whole process group.  Nothing is left behind: the cluster file's folder is removed at the
end, and if the launcher itself is killed, its janitor (:mod:`.scratch`) ends the parties and
removes the folder.

Each party gets its own share of this machine's CPUs (:func:`cpu_shares`, set with
``os.sched_setaffinity`` right after the party's interpreter starts, before it has threads),
as parties on their own machines would have.  Without it the parties' threads (SPU's, and
brpc's link workers) move between the same cores and wake each other up late (the homework's
later epochs: median 0.68 s pinned against 0.85 s shared on a 2-core machine; bench/README.md,
``bench_parties.py --no-pin``).  With fewer CPUs than parties nothing is pinned.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from ..config import PROTOCOLS
from . import scratch
from .cluster import (
    DEFAULT_START_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    ClusterError,
    loopback_cluster,
)

GRACE_S = 15.0  # beyond timeout_s, before the launcher kills a party that has not ended
# a launched party reads, on this file descriptor, one line "PARTY EXIT_STATUS" per party that
# ended with a failure (:func:`follow_launcher`)
LAUNCH_FD_ENV = "PPML_TORCH_LAUNCH_FD"


def ended_line(party: str, returncode: int) -> bytes:
    return f"{party} {returncode}\n".encode()


def parse_ended(line: str) -> tuple[str, int] | None:
    """``(party, exit status)`` of one of the launcher's lines, ``None`` if it is not one."""
    party, _, code = line.strip().partition(" ")
    try:
        return party, int(code)
    except ValueError:
        return None


class _News:
    """The launcher's news in a launched party: a thread reads them from the process's start
    (``python -m ppml_torch`` calls :func:`follow_launcher`).  Before the party's session
    watches the others, news of a failed party ends this one at once (one line, exit code 3);
    during the session it goes to the session's :class:`~.supervision.Watchdog`
    (:func:`subscribe`); after it, it is ignored (this party's results are complete)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.console = os.dup(2)  # the console, even while a session sends fd 2 to its log
        self.lock = threading.Lock()
        self.listener: Callable[[str, int], None] | None = None
        self.sessions = 0  # sessions that subscribed so far

    def run(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                return
            if not chunk:
                return  # the launcher ended (its janitor ends this party if it was killed)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                news = parse_ended(line.decode(errors="replace"))
                if news is not None:
                    self.deliver(*news)

    def deliver(self, party: str, code: int) -> None:
        with self.lock:
            listener, sessions = self.listener, self.sessions
        if listener is not None:
            listener(party, code)
        elif sessions == 0:
            sys.stdout.flush()
            os.write(
                self.console,
                f"ppml-torch: party {party} ended ({ended(code)}) before this party's session "
                "started; its own output says why it stopped\n".encode(),
            )
            os._exit(3)  # docs/parties.md: a party lost


_news: list[_News] = []


def follow_launcher() -> None:
    """In a party started by :func:`launch` (else nothing): read the launcher's news from now
    on.  The variable is taken out of the environment: this process's own children do not
    inherit the descriptor and must not read another one by that number."""
    value = os.environ.pop(LAUNCH_FD_ENV, "")
    if _news or not value.isdigit():
        return
    try:
        os.fstat(int(value))
    except OSError:
        return
    _news.append(_News(int(value)))
    threading.Thread(target=_news[0].run, daemon=True, name="ppml-launch-news").start()


def subscribe(listener: Callable[[str, int], None] | None) -> None:
    """``listener(party, exit status)`` gets the launcher's news from now on; ``None``: this
    party's session is over, news is ignored.  Nothing when not launched."""
    if not _news:
        return
    news = _news[0]
    with news.lock:
        news.listener = listener
        if listener is not None:
            news.sessions += 1


def ended(code: int) -> str:
    """How a process ended, from its exit status (``-9``: killed by SIGKILL)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclasses.dataclass
class PartyRun:
    party: str
    returncode: int | None
    lines: list[str]
    killed: bool = False


@dataclasses.dataclass
class LaunchResult:
    cluster_file: str
    runs: list[PartyRun]

    @property
    def returncode(self) -> int:
        for r in self.runs:
            if r.returncode:
                rc = r.returncode
                return 128 - rc if rc < 0 else rc  # killed by signal N: 128 + N, as shells do
        return 0

    def output(self, party: str) -> str:
        return "".join(next(r for r in self.runs if r.party == party).lines)


def parse_parties(text: str) -> list[str]:
    parties = [p.strip() for p in text.split(",") if p.strip()]
    if len(set(parties)) != len(parties):
        raise ClusterError(f"--parties lists a party twice ({text}); list each once")
    for p in parties:
        if not p.isidentifier():
            raise ClusterError(f"party name {p!r} must be an identifier like 'alice'")
    sizes = sorted(set(PROTOCOLS.values()))
    if len(parties) not in sizes:
        raise ClusterError(
            f"--parties names {len(parties)} parties; MPC here runs with 2 (SEMI2K, CHEETAH) "
            "or 3 (ABY3), e.g. --parties alice,bob"
        )
    return parties


def cpu_shares(n_parties: int, cpus: Sequence[int] | None = None) -> list[list[int]] | None:
    """This process's CPUs (``os.sched_getaffinity``) split into ``n_parties`` contiguous
    shares (the first ones one CPU larger when they do not divide evenly); ``None`` when there
    are fewer CPUs than parties."""
    cpus = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
    if len(cpus) < n_parties:
        return None
    size, extra = divmod(len(cpus), n_parties)
    out, start = [], 0
    for i in range(n_parties):
        end = start + size + (i < extra)
        out.append(cpus[start:end])
        start = end
    return out


def describe_shares(parties: Sequence[str], shares: Sequence[Sequence[int]]) -> str:
    """``"alice 0, bob 1"``: which CPUs each party runs on."""
    return ", ".join(f"{p} {','.join(map(str, c))}" for p, c in zip(parties, shares, strict=True))


def pin(pid: int, cpus: Sequence[int]) -> None:
    """Keep process ``pid`` (and the threads it starts afterwards) on ``cpus``."""
    os.sched_setaffinity(pid, set(cpus))


def launch(
    parties: Sequence[str],
    argv: Sequence[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
    out: TextIO | None = None,
    python: str | None = None,
    grace_s: float = GRACE_S,
    workdir: str | None = None,
    pin_cpus: bool = True,
    check: Callable[[Sequence[str], str], None] | None = None,
) -> LaunchResult:
    """Run ``argv`` (a sub-command and its arguments) once per party; see the module doc.
    ``pin_cpus=False``: the parties share every CPU (no :func:`cpu_shares`).  ``check(argv,
    first party)`` runs before anything is written or started (the command line passes
    :func:`ppml_torch.cli.launch.check_command`: the sub-command and its arguments)."""
    out = out or sys.stdout
    parties = list(parties)
    if check is not None:
        check(argv, parties[0])
    shares = cpu_shares(len(parties)) if pin_cpus else None
    folder = scratch.make_dir("launch") if workdir is None else None
    path = _write_cluster_file(parties, folder or workdir or "", timeout_s, start_timeout_s)
    console = _Console(out, parties)
    procs: dict[str, subprocess.Popen[str]] = {}
    news: dict[str, int] = {}  # party -> the write end of its pipe of news
    runs = {p: PartyRun(p, None, []) for p in parties}
    readers = []

    def on_term(signum: int, frame: object) -> None:  # `kill <launcher>` still cleans up
        raise SystemExit(128 + signum)

    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        for i, p in enumerate(parties):
            cmd = [python or sys.executable, "-m", "ppml_torch", *argv]
            procs[p], news[p] = _start(cmd + ["--cluster", path, "--party", p])
            scratch.end_with_me(procs[p].pid)  # its process group, if this process is killed
            if shares is not None:  # the interpreter has just started: no threads yet
                pin(procs[p].pid, shares[i])
            readers.append(console.follow(runs[p], procs[p]))
        if shares is not None:
            where = describe_shares(parties, shares)
            console.say("launch", f"CPUs: {where} (a share each, as on separate machines)")
        elif pin_cpus:
            console.say(
                "launch",
                f"{len(parties)} parties on {len(os.sched_getaffinity(0))} CPUs: not pinned",
            )
        _wait_all(procs, news, runs, console, timeout_s + grace_s)
    finally:
        _end(procs, readers)
        for fd in news.values():
            os.close(fd)
        for pr in procs.values():
            scratch.forget_group(pr.pid)
        scratch.remove(folder)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    for p, pr in procs.items():
        runs[p].returncode = pr.returncode
    return LaunchResult(path, [runs[p] for p in parties])


def _write_cluster_file(
    parties: list[str], workdir: str, timeout_s: float, start_timeout_s: float
) -> str:
    """A loopback cluster file with free ports, in ``workdir``."""
    path = os.path.join(workdir, "cluster.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(
            loopback_cluster(parties, timeout_s=timeout_s, start_timeout_s=start_timeout_s),
            f,
            indent=2,
        )
    return path


class _Console:
    """Every party's lines on ``out``, each prefixed with the party's name, one at a time."""

    def __init__(self, out: TextIO, parties: Sequence[str]):
        self.out = out
        self.width = max(len(p) for p in parties)
        self.lock = threading.Lock()

    def say(self, party: str, line: str) -> None:
        with self.lock:
            self.out.write(f"{party:>{self.width}} | {line}")
            if not line.endswith("\n"):
                self.out.write("\n")
            self.out.flush()

    def follow(self, run: PartyRun, proc: subprocess.Popen[str]) -> threading.Thread:
        """A thread that keeps and prints every line of ``run``'s party until it ends."""

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                run.lines.append(line)
                self.say(run.party, line)

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        return t


def _start(cmd: list[str]) -> tuple[subprocess.Popen[str], int]:
    """The party's process, and the write end of the pipe on which it reads the launcher's
    news (:data:`LAUNCH_FD_ENV`)."""
    read, write = os.pipe()
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1", **{LAUNCH_FD_ENV: str(read)}),
            pass_fds=(read,),
            start_new_session=True,  # its own process group: killed as a whole
        )
    except BaseException:
        os.close(write)
        raise
    finally:
        os.close(read)
    return proc, write


def _tell(news: dict[str, int], procs: dict[str, subprocess.Popen[str]], party: str) -> None:
    """Every other party still running learns that ``party`` ended with a failure."""
    line = ended_line(party, procs[party].returncode or 0)
    for p, fd in news.items():
        if p != party and procs[p].poll() is None:
            try:
                os.write(fd, line)
            except OSError:  # it has just ended
                pass


def _wait_all(
    procs: dict[str, subprocess.Popen[str]],
    news: dict[str, int],
    runs: dict[str, PartyRun],
    console: _Console,
    limit_s: float,
) -> None:
    """Until every party has ended; a party that fails is announced to the others at once;
    they get ``limit_s`` to end by themselves before they are killed."""
    deadline = None
    told: set[str] = set()
    while True:
        alive = [p for p, pr in procs.items() if pr.poll() is None]
        failed = [p for p, pr in procs.items() if pr.poll() not in (None, 0)]
        for p in failed:
            if p not in told:
                told.add(p)
                _tell(news, procs, p)
        if not alive:
            return
        if failed and deadline is None:
            deadline = time.monotonic() + limit_s
        if deadline is not None and time.monotonic() > deadline:
            for p in alive:
                _kill_group(procs[p])
                runs[p].killed = True
                console.say(
                    "launch", f"killed {p}: still running {limit_s:g} s after {failed[0]} failed"
                )
            for p in alive:
                procs[p].wait()
            return
        time.sleep(0.1)


def _end(procs: dict[str, subprocess.Popen[str]], readers: list[threading.Thread]) -> None:
    """Nothing left behind: every party's process group killed, waited for, its output read."""
    for pr in procs.values():  # anything a party left in its group (and any party, on ^C)
        _kill_group(pr)
    for pr in procs.values():
        try:
            pr.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    for t in readers:
        t.join(timeout=5)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
