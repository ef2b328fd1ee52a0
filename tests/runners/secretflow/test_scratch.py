"""Temporary folders (runners/secretflow/scratch.py): made, removed, kept; and nothing left in
the temporary folder after a launch and a simulation session, however they end (the janitor
itself: test_janitor.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from ppml_torch.runners.secretflow import scratch
from tests.runners.secretflow.processes import ENV, ROOT, kill_group


def test_made_removed_and_kept_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    a, b = scratch.make_dir("a"), scratch.make_dir("b")
    assert os.path.basename(a).startswith("ppml-torch-a-") and os.path.dirname(a) == str(tmp_path)
    assert {a, b} <= scratch.live()
    scratch.remove(a)
    assert not os.path.exists(a) and a not in scratch.live()
    assert scratch.keep(b) == b and os.path.isdir(b) and b not in scratch.live()
    scratch.remove(b)


def _ours(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith(scratch.PREFIX))


def _users_of(folder):
    """Processes whose command line names ``folder`` (Ray's, for a simulation)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if folder.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def _settled(folder, before=(), limit=20, users_of=None):
    """Nothing new of ours in ``folder`` and no process using ``users_of`` (default: the
    folder), within ``limit`` s (each process's janitor works a moment after it ended)."""
    end = time.monotonic() + limit
    users_of = users_of or folder

    def new():
        return sorted(set(_ours(folder)) - set(before))

    while (new() or _users_of(users_of)) and time.monotonic() < end:
        time.sleep(0.2)
    return new(), _users_of(users_of)


@pytest.mark.slow
@pytest.mark.secretflow
def test_a_launch_leaves_nothing_in_the_temporary_folder(tmp_path):
    """Catches the 2-7 files every launch left (the cluster file's folder, each party's
    SecretFlow/brpc log and SPU log folder): the folder is listed while the parties run (so
    this test watches where they write) and after."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    cmd = [sys.executable, "-m", "ppml_torch", "launch", "--parties", "alice,bob", "--"]
    cmd += ["homework-mlp", "--runs", "secretflow:SEMI2K", "--epochs", "1"]
    seen: set[str] = set()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(ENV, TMPDIR=str(tmp)),
        cwd=ROOT,
        start_new_session=True,
    )
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.update(n.rsplit("-", 1)[0] for n in _ours(tmp))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        done.set()
        watcher.join()
        kill_group(proc.pid)
    assert proc.returncode == 0, out[-3000:]
    assert {"ppml-torch-launch", "ppml-torch-party-alice", "ppml-torch-party-bob"} <= seen, seen
    assert _settled(str(tmp)) == ([], [])


SESSION = """
import os, sys, time
import numpy as np
from ppml_torch.runners import open_session
s = open_session("secretflow", "SEMI2K")
h = s.put(np.ones(3, np.float32), owner="alice")
assert (s.reveal(s.call(lambda x: x * 2, h)) == 2).all()
print(sorted(n for n in os.listdir(os.environ["TMPDIR"]) if n.startswith("ppml-torch-")),
      flush=True)
if sys.argv[1] == "close":
    s.close()
    sys.exit(0)
time.sleep(600)  # the test kills this driver
"""


@pytest.mark.slow
@pytest.mark.secretflow
@pytest.mark.parametrize("how", ["close", "SIGKILL", "SIGTERM"])
def test_a_simulation_session_leaves_nothing_however_it_ends(how):
    """Catches Ray's session folder (about 30 files, formerly in /tmp/ray) and the SPU logs
    left behind, and Ray's agents that outlived a killed driver (they kept running).  In the
    suite's own temporary folder (tests/conftest.py): a test's tmp_path is too long a path
    for Ray's sockets."""
    tmp = tempfile.gettempdir()
    before = _ours(tmp)
    proc = subprocess.Popen(
        [sys.executable, "-c", SESSION, how],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(ENV, TMPDIR=str(tmp)),
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        listed = proc.stdout.readline()
        sim = [n for n in re.findall(r"'([^']+)'", listed) if n not in before]
        assert len(sim) == 1 and sim[0].startswith("ppml-torch-sim-"), listed
        sim = os.path.join(tmp, sim[0])
        if how != "close":
            assert _users_of(sim)  # Ray runs in the session's folder
            os.kill(proc.pid, getattr(signal, how))
        proc.wait(timeout=120)
        assert _settled(tmp, before, users_of=sim) == ([], [])
        assert not os.path.exists(os.path.join(tmp, "ray"))
    finally:
        kill_group(proc.pid)
