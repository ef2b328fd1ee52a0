"""The janitor (runners/secretflow/janitor.py), run as scratch.py runs it, for a parent that
ends in each of the ways a party can end: normally, ``os._exit``, SIGTERM, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.runners.secretflow.processes import ENV

PARENT = """
import os, signal, subprocess, sys, time
from ppml_torch.runners.secretflow import scratch
how = sys.argv[1]
gone, kept = scratch.make_dir("gone"), scratch.make_dir("kept")
open(os.path.join(gone, "log"), "w").write("x")
scratch.keep(kept)
# a process of another group, ended with this one (a launcher's party)
party = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         start_new_session=True)
scratch.end_with_me(party.pid)
# a process of this group that names the folder (Ray's agent outliving its driver)
agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", gone])
print(gone, kept, party.pid, agent.pid, flush=True)
if how == "exit":
    sys.exit(0)
if how == "os._exit":
    os._exit(3)
time.sleep(60)  # SIGTERM / SIGKILL from the test
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].startswith("Z")  # a zombie has ended
    except OSError:
        return True


def _wait(cond, limit=15.0):
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize("how", ["exit", "os._exit", "SIGTERM", "SIGKILL"])
def test_what_the_parent_leaves_is_removed_however_it_ends(tmp_path, how):
    """Catches a folder left behind (a party ended by os._exit after a lost party, or killed by
    its launcher or start-up guard), a kept folder removed anyway, a launched party that
    outlives its killed launcher, or a Ray agent that outlives its killed driver."""
    proc = subprocess.Popen(
        [sys.executable, "-c", PARENT, how],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(ENV, TMPDIR=str(tmp_path)),
        start_new_session=True,
    )
    try:
        gone, kept, party, agent = proc.stdout.readline().split()
        assert os.path.isdir(gone) and os.path.isdir(kept)
        if how.startswith("SIG"):
            os.kill(proc.pid, getattr(signal, how))
        proc.wait(timeout=30)
        assert _wait(lambda: not os.path.exists(gone)), os.listdir(tmp_path)
        assert os.path.isdir(kept)
        assert _wait(lambda: _gone(int(party)) and _gone(int(agent)))
    finally:
        for pid in (proc.pid,):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


def test_a_removed_or_forgotten_group_is_left_alone(tmp_path):
    """Catches a janitor that kills a group its parent forgot (an ended party whose process
    group number could be reused) or removes a folder twice."""
    script = """
import subprocess, sys
from ppml_torch.runners.secretflow import scratch
d = scratch.make_dir("x")
scratch.remove(d)
p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                     start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
scratch.end_with_me(p.pid)
scratch.forget_group(p.pid)
print(d, p.pid, flush=True)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=dict(ENV, TMPDIR=str(tmp_path)),
        timeout=60,
    )
    d, pid = done.stdout.split()
    try:
        assert not os.path.exists(d)
        time.sleep(1.0)  # the janitor has had its chance
        assert not _gone(int(pid))
    finally:
        os.kill(int(pid), signal.SIGKILL)
