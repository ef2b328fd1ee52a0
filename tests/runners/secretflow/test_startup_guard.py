"""The start-up guard's process (runners/secretflow/startup_guard.py), run as the supervisor
runs it (``python -I -S <file>``), on a stand-in for the party: a sleeping process."""

from __future__ import annotations

import subprocess
import sys
import time

from ppml_torch.runners.secretflow import startup_guard


def _guard(victim_pid: int, limit_s: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-I", "-S", startup_guard.__file__, str(victim_pid), str(limit_s), "msg"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(60)"])


def test_past_its_limit_it_says_why_and_kills_the_party():
    """Catches a guard that does not kill (a party stuck in a TLS handshake would wait
    forever) or kills without the one line."""
    victim = _sleeper()
    try:
        t0 = time.monotonic()
        guard = _guard(victim.pid, 0.5)  # its stdin stays open: start-up never finishes
        assert victim.wait(timeout=10) == -9  # SIGKILL
        assert guard.wait(timeout=10) == 0 and time.monotonic() - t0 < 10
        assert guard.stderr.read() == "ppml-torch: msg\n"
    finally:
        victim.kill()
        guard.stdin.close()


def test_start_up_done_ends_it_quietly():
    """Catches a guard that kills a party whose start-up finished (its stdin closed)."""
    victim = _sleeper()
    try:
        guard = _guard(victim.pid, 30)
        t0 = time.monotonic()
        guard.stdin.close()
        assert guard.wait(timeout=10) == 0 and time.monotonic() - t0 < 5
        assert guard.stderr.read() == ""
        assert victim.poll() is None  # still running
    finally:
        victim.kill()
        victim.wait()
