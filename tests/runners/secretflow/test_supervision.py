"""Supervision of a production session (runners/secretflow/supervision.py): the watchdog, the
start-up guard, the end of a process after a lost party."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from ppml_torch.runners.secretflow.cluster import loopback_cluster
from tests.runners.secretflow.processes import (
    ENV,
    ROOT,
    kill_group,
    pid_of,
    wait_spu_links,
)


@pytest.mark.slow
@pytest.mark.secretflow
def test_launch_homework_then_kill_bob_ends_alice_within_bound():
    """Through `ppml-torch launch`: bob is killed mid-training; alice ends with one line
    naming bob within the bound, the launcher exits non-zero, no party process is left."""
    timeout = 8
    cmd = [
        sys.executable,
        "-m",
        "ppml_torch",
        "launch",
        "--parties",
        "alice,bob",
        "--timeout",
        str(timeout),
        "--",
        "homework-mlp",
        "--runs",
        "secretflow:SEMI2K",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
        cwd=ROOT,
        start_new_session=True,
    )
    lines, killed_at, cluster = [], None, None
    try:
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"\((/\S+cluster\.json)\)", line)
            if m:
                cluster = m.group(1)
            if killed_at is None and line.startswith("  bob | ----"):
                wait_spu_links(cluster)  # start-up done on both sides
                time.sleep(3)  # into the training
                bob = pid_of(cluster, "bob")
                os.kill(bob, signal.SIGKILL)
                killed_at = time.monotonic()
            if "alice | ppml-torch" in line:
                alice_err_at = time.monotonic()
        proc.wait(timeout=120)
    finally:
        proc.terminate()  # the launcher kills its parties' process groups
        proc.wait(timeout=30)
        for p in ("alice", "bob"):  # and if it could not, this test does
            pid = pid_of(cluster, p, missing_ok=True) if cluster else None
            if pid:
                kill_group(pid)
    text = "".join(lines)
    assert killed_at is not None, text
    err = [x for x in lines if x.startswith("alice | ppml-torch")]
    assert len(err) == 1 and "party bob stopped answering" in err[0], text
    elapsed = alice_err_at - killed_at
    print(f"alice's error {elapsed:.1f} s after bob was killed (bound {timeout} s)")
    assert elapsed < timeout + 5, text
    assert proc.returncode != 0
    assert "bob: exit -9" in text
    time.sleep(1)
    assert pid_of(cluster, "alice", missing_ok=True) is None
    assert pid_of(cluster, "bob", missing_ok=True) is None


# -- the watchdog, in a process of its own (it ends its process) ---------------------------------

WATCH = """
import sys, time
from ppml_torch.runners.secretflow.cluster import load_cluster
from ppml_torch.runners.secretflow.supervision import Watchdog
Watchdog(load_cluster(sys.argv[1]), "alice", 2, time.monotonic() + float(sys.argv[2])).start()
print("watching", flush=True)
time.sleep(120)
"""


def _bob_listening(cluster):
    socks = []
    for addr in cluster["parties"]["bob"].values():
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        host, port = addr.split(":")
        s.bind((host, int(port)))
        s.listen()
        socks.append(s)
    return socks


def _watch(tmp_path, cluster, startup_s):
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(cluster))
    proc = subprocess.Popen(
        [sys.executable, "-c", WATCH, str(path), str(startup_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    assert proc.stdout.readline() == "watching\n", proc.stderr.read()
    return proc


def test_watchdog_names_a_party_whose_ports_close_within_timeout(tmp_path):
    """Catches a watchdog that never fires, fires late, or names nobody: bob's ports answer
    (he started), then close; alice's process ends with exit code 3 and one line naming bob
    within timeout_s (+1 s polling, +0.5 s per probe)."""
    cluster = loopback_cluster(["alice", "bob"], timeout_s=2, start_timeout_s=60)
    socks = _bob_listening(cluster)
    proc = _watch(tmp_path, cluster, startup_s=600)
    try:
        time.sleep(2.5)  # the watchdog has seen bob listening
        for s in socks:
            s.close()
        closed_at = time.monotonic()
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - closed_at
    finally:
        proc.kill()
    assert proc.returncode == 3, err
    bob = cluster["parties"]["bob"]
    assert err == (
        f"ppml-torch: party bob stopped answering: nothing listened on its ports "
        f"({bob['address']}, {bob['spu_address']}) for 2 s (timeout_s); check that it runs "
        "(its own output says why it stopped)\n"
    )
    assert 2 <= elapsed < 2 + 3, elapsed


@pytest.mark.parametrize("bob_up", [True, False], ids=["ports answer", "never started"])
def test_watchdog_ends_a_start_up_past_its_deadline(tmp_path, bob_up):
    """Start-up past its deadline: one line saying whether bob ever started, exit code 3."""
    cluster = loopback_cluster(["alice", "bob"], timeout_s=5, start_timeout_s=10)
    socks = _bob_listening(cluster) if bob_up else []
    try:
        proc = _watch(tmp_path, cluster, startup_s=1)
        _, err = proc.communicate(timeout=30)
    finally:
        for s in socks:
            s.close()
    assert proc.returncode == 3 and len(err.splitlines()) == 1, err
    if bob_up:
        assert err.startswith(
            "ppml-torch: start-up did not finish within 15 s (start_timeout_s + timeout_s) "
            "though every party's ports answer; every party must run the same program"
        ), err
    else:
        assert err.startswith(
            "ppml-torch: party bob did not start within 15 s (start_timeout_s + timeout_s); "
            "start every party with the same cluster file"
        ), err
