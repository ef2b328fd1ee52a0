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
    naming bob and how he ended within seconds (the launcher's news; without it the watchdog
    would within timeout_s), the launcher exits non-zero, no party process is left."""
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
    assert len(err) == 1, text
    assert err[0].startswith(
        "alice | ppml-torch: party bob ended (killed by SIGKILL) while this party still needed it"
    ), text
    elapsed = alice_err_at - killed_at
    print(f"alice's error {elapsed:.1f} s after bob was killed")
    assert elapsed < 5, text
    assert proc.returncode != 0
    assert "bob: exit -9" in text
    time.sleep(1)
    assert pid_of(cluster, "alice", missing_ok=True) is None
    assert pid_of(cluster, "bob", missing_ok=True) is None


# -- the watchdog, in a process of its own (it ends its process) ---------------------------------

WATCH = """
import os, sys, time
from ppml_torch.runners.secretflow import launcher
from ppml_torch.runners.secretflow.cluster import load_cluster
from ppml_torch.runners.secretflow.logs import log_file
from ppml_torch.runners.secretflow.supervision import Watchdog
launcher.follow_launcher()  # as `python -m ppml_torch` does
startup_s, mode = float(sys.argv[2]), sys.argv[3]
w = Watchdog(load_cluster(sys.argv[1]), "alice", 2, time.monotonic() + startup_s,
             keep_logs=lambda: "KEPT")
if startup_s <= 0:
    w.startup_deadline = None  # start-up done
w.start()
if mode == "brpc":  # what brpc's threads write to the log while the parties connect
    log_file().write(
        "E1207 1 2 socket.cpp:2082] Fail to SSL_do_handshake: error:0A000418:SSL "
        "routines::tlsv1 alert unknown ca\\n")
if mode == "ending":
    w.ending("party 'bob' runs with field FM128 but 'alice' with FM64", 2, 1.0)
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


def _watch(tmp_path, cluster, startup_s, mode="", news_fd=None):
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(cluster))
    env = dict(ENV) if news_fd is None else dict(ENV, PPML_TORCH_LAUNCH_FD=str(news_fd))
    proc = subprocess.Popen(
        [sys.executable, "-c", WATCH, str(path), str(startup_s), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        pass_fds=() if news_fd is None else (news_fd,),
    )
    assert proc.stdout.readline() == "watching\n", proc.stderr.read()
    return proc


def test_watchdog_names_a_party_whose_ports_close_within_timeout(tmp_path):
    """Catches a watchdog that never fires, fires late, or names nobody: bob's ports answer
    (he started), then close; alice's process ends with exit code 3 and one line naming bob
    within timeout_s (+1 s polling, +0.5 s per probe)."""
    cluster = loopback_cluster(["alice", "bob"], timeout_s=2, start_timeout_s=60)
    socks = _bob_listening(cluster)
    proc = _watch(tmp_path, cluster, startup_s=0)
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


def test_during_start_up_a_party_seen_and_then_gone_is_named_within_seconds(tmp_path):
    """Catches a party that dies during start-up named only at the start-up bound (alice said
    'party bob did not start within 90 s' at +91.6 s): bob's ports answered, then closed."""
    cluster = loopback_cluster(["alice", "bob"], timeout_s=30, start_timeout_s=60)
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
    assert err.startswith("ppml-torch: party bob stopped during start-up: its ports ("), err
    assert len(err.splitlines()) == 1
    print(f"named {elapsed:.1f} s after bob's ports closed (STARTUP_GONE_S 3 s)")
    assert 3 <= elapsed < 3 + 5, elapsed


def test_a_tls_handshake_failure_in_brpcs_log_ends_start_up_in_its_words(tmp_path):
    """Catches a refused certificate that only the start-up bound ends (94 s, a generic
    message) though brpc said why within a second; the logs are kept and named."""
    for f in ("ca.pem", "a.pem", "a.key", "b.pem", "b.key"):
        (tmp_path / f).write_text("x")
    cluster = loopback_cluster(["alice", "bob"], timeout_s=30, start_timeout_s=60)
    cluster["tls"] = {
        "ca_cert": "ca.pem",
        "parties": {
            "alice": {"cert": "a.pem", "key": "a.key"},
            "bob": {"cert": "b.pem", "key": "b.key"},
        },
    }
    t0 = time.monotonic()
    proc = _watch(tmp_path, cluster, startup_s=600, mode="brpc")
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 2, err
    assert err == (
        f"ppml-torch: party alice: party bob refused this party's certificate {tmp_path / 'a.pem'} "
        "in the TLS handshake: brpc says 'tlsv1 alert unknown ca'; check it against the ca_cert "
        "of party bob's cluster file (this party's logs kept in KEPT)\n"
    )
    assert time.monotonic() - t0 < 10


def test_the_launchers_news_ends_the_party_at_once(tmp_path):
    """Catches a launched party that waits for its bounds (alice printed nothing and was
    killed at +45 s) although the launcher saw bob end: during start-up, one line naming bob
    and how he ended, exit code 3, within about a second."""
    cluster = loopback_cluster(["alice", "bob"], timeout_s=30, start_timeout_s=60)
    read, write = os.pipe()
    try:
        proc = _watch(tmp_path, cluster, startup_s=600, news_fd=read)
        t0 = time.monotonic()
        os.write(write, b"alice 1\nbob -9\n")  # news of this party itself are no news
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        os.close(read)
        os.close(write)
        proc.kill()
    assert proc.returncode == 3, err
    assert err == (
        "ppml-torch: party bob ended (killed by SIGKILL) during start-up; its own output says "
        "why it stopped\n"
    )
    assert elapsed < 3, elapsed


def test_parties_that_disagree_end_with_their_own_line_and_no_other(tmp_path):
    """Catches the second, misleading line (a start-up bound, or the launcher's news that the
    other party, which found the same difference, ended first) and exit code 3: ending, the
    watchdog says only the disagreement, with exit code 2, if closing takes too long."""
    cluster = loopback_cluster(["alice", "bob"], timeout_s=30, start_timeout_s=60)
    read, write = os.pipe()
    try:
        proc = _watch(tmp_path, cluster, startup_s=600, mode="ending", news_fd=read)
        os.write(write, b"bob 2\n")
        _, err = proc.communicate(timeout=30)
    finally:
        os.close(read)
        os.close(write)
        proc.kill()
    assert proc.returncode == 2, err
    assert err == "ppml-torch: party 'bob' runs with field FM128 but 'alice' with FM64\n"


HANGS = """
import sys, threading
from ppml_torch.runners.secretflow.supervision import exit_at_shutdown
threading.Thread(target=threading.Event().wait).start()  # SecretFlow's thread, waiting forever
exit_at_shutdown(int(sys.argv[1]))
sys.exit(2)  # the command line's code for the one-line error
"""


def test_after_a_lost_party_the_process_ends_with_its_code_though_a_thread_waits():
    """Catches a process that hangs at exit in a thread that waits for a party that is gone,
    or that ends with another code than docs/parties.md's 3 (a party lost)."""
    done = subprocess.run(
        [sys.executable, "-c", HANGS, "3"], capture_output=True, text=True, env=ENV, timeout=60
    )
    assert done.returncode == 3, done.stderr
